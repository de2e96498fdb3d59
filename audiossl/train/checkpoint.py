"""Training checkpoints: the exact-resume state (model, optimiser, schedule, sampler position, random
states) written atomically, numbered copies and their pruning. The ``model.pt`` hand-off file and
atomic writes live in :mod:`audiossl.models.checkpoint`.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.models.checkpoint import TMP_SUFFIX, WriteError, atomic_save


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
