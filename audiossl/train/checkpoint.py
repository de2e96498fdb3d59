"""Checkpoints: atomic writes, the exact-resume training state, and the ``model.pt`` hand-off file.

``model.pt`` is what one stage hands to the next (pre-training -> fine-tuning -> scoring), whether it
came from our trainer or from ``audiossl.bin.import_checkpoint``:

    {"format": "audiossl-model", "version": 1,
     "task": <registered task name>, "config": <resolved config dict, with its "model" section>,
     "model": <training model state dict>, "extra": <task-specific dict, e.g. label names>}
"""
from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODEL_FORMAT = "audiossl-model"
MODEL_VERSION = 1
TMP_SUFFIX = ".tmp"  # atomic writes go to .<name>.<random>.tmp beside the file, then are renamed


class WriteError(OSError):
    """A file could not be written (disk full, quota, permissions); the file's previous version, if
    any, is intact and no temporary file is left. ``str()`` names the file and the reason."""


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind ``e`` (torch.save turns ENOSPC into a RuntimeError chained to it)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same directory, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact (rename is atomic on POSIX); a failed write
    (e.g. disk full) raises :class:`WriteError` and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        err = _os_error(e)
        if err is None:
            raise
        raise WriteError(err.errno, f"cannot write {path}: {err.strerror or err}") from None


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in ``directory``
    (only safe while no other process writes there: the trainer holds the exp dir's lock)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    doomed = [p for p in directory.iterdir()
              if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file()]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def save_model(
    path: str | os.PathLike,
    task: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a ``model.pt`` hand-off file (see module docstring)."""
    atomic_save(
        {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "task": task,
            "config": config,
            "model": {k: v.detach().cpu() for k, v in state_dict.items()},
            "extra": extra or {},
        },
        path,
    )


@dataclass
class ImportedModel:
    """A released checkpoint converted to our layout (what the BEATs and EAT importers return).

    Attributes:
        task: the registered task the weights belong to.
        model_config: the task's ``model:`` section.
        state_dict: the training model's state dict.
        extra: anything else worth keeping (source file, label names, ...), saved as ``extra``.
        data_config: the ``data:`` entries the checkpoint was trained with (its normalisation; the
            input length of a fine-tuned EAT), so that the file alone says how to feed it.
    """

    task: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)
    data_config: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The config dict to save: the task, its model section, and data entries if any."""
        cfg: dict[str, Any] = {"task": self.task, "model": self.model_config}
        if self.data_config:
            cfg["data"] = dict(self.data_config)
        return cfg

    def save(self, path: str | os.PathLike) -> None:
        """Write it as a ``model.pt`` hand-off file."""
        save_model(path, self.task, self.config(), self.state_dict, self.extra)


def load_model(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``model.pt`` file; raise a ValueError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise ValueError(
            f"{path}: not an audiossl model.pt file; convert official checkpoints with "
            "python -m audiossl.bin.import_checkpoint"
        )
    if obj.get("version") != MODEL_VERSION:
        raise ValueError(f"{path}: model.pt version {obj.get('version')} is not supported (want {MODEL_VERSION})")
    return obj


# --------------------------------------------------------------------------------------------
# Training checkpoints (exact resume)
# --------------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = "audiossl-checkpoint"
CHECKPOINT_VERSION = 1
_NUMBERED = re.compile(r"^checkpoint_(\d+)\.pt$")


def atomic_link(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make ``dst`` a second name of ``src`` (a hard link; a copy where links are not possible),
    replacing any previous ``dst`` atomically."""
    src, dst = Path(src), Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=TMP_SUFFIX, dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise WriteError(e.errno, f"cannot write {dst}: {e.strerror or e}") from None
        raise


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch and CUDA random states of this process."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a training checkpoint atomically (format tag added)."""
    atomic_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`save_checkpoint`; ValueError naming the file if
    it is something else."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}); "
                         "delete it to resume from an older one in checkpoints/") from e
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an audiossl training checkpoint")
    if obj.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {obj.get('version')} is not supported (want {CHECKPOINT_VERSION})")
    return obj


def numbered_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``checkpoint_<update>.pt`` files of a directory as (update, path), oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _NUMBERED.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` numbered checkpoints; returns the deleted paths."""
    assert keep_last >= 2, f"keep_last must be >= 2 (the newest checkpoint may be mid-write), got {keep_last}"
    found = numbered_checkpoints(ckpt_dir)
    doomed = [p for _, p in found[:-keep_last]]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
