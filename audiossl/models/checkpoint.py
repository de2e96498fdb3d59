"""Model files: ``model.pt``, the hand-off file every stage reads and writes, atomic writes, and the
one strict way to put a state dict into a module.

``model.pt`` is what one stage hands to the next (pre-training -> fine-tuning -> scoring), whether it
came from our trainer or from ``audiossl.bin.import_checkpoint``:

    {"format": "audiossl-model", "version": 1,
     "task": <registered task name>, "config": <resolved config dict, with its "model" section>,
     "model": <training model state dict>, "extra": <task-specific dict, e.g. label names>}

Every load of weights, ours or an official file's, goes through :func:`load_strict` (or
:func:`check_state_dict` when a converter checks a state dict against the shapes a model expects): a
mismatch names the file and lists every missing, unexpected and mis-shaped key. A module may say how
older key names map to its own with an ``upgrade_state_dict(state) -> state`` method (fairseq's
``upgrade_state_dict_named`` habit); :func:`load_strict` applies it to that module's keys first.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

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
# Strict loading
# --------------------------------------------------------------------------------------------
class CheckpointMismatch(ValueError):
    """A state dict does not fit the model: the message names the file and lists the differences."""


def _show(keys: list[str], prefix: str, limit: int = 10) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(prefix + k for k in keys[:limit]) + more


def state_dict_diff(
    expected: Mapping[str, Any], got: Mapping[str, Any], prefix: str = "", unplaced: tuple[str, ...] = ()
) -> list[str]:
    """Readable differences between the keys and shapes a model expects and a state dict's.

    Args:
        expected: key -> tensor (or shape) the model has.
        got: key -> tensor the file gives.
        prefix: put before every key in the message (where the keys sit in the file).
        unplaced: further file keys that found no place (a converter's leftovers).

    Returns:
        One line per kind of difference; empty when they match.
    """
    shape = {k: tuple(v.shape) if hasattr(v, "shape") else tuple(v) for k, v in expected.items()}
    missing = sorted(set(shape) - set(got))
    unexpected = sorted((set(got) - set(shape)) | set(unplaced))
    mismatched = sorted(k for k in set(shape) & set(got) if tuple(got[k].shape) != shape[k])
    lines = []
    if missing:
        lines.append(f"missing in the file ({len(missing)}): {_show(missing, prefix)}")
    if unexpected:
        lines.append(f"unexpected in the file ({len(unexpected)}): {_show(unexpected, prefix)}")
    lines += [f"shape mismatch: {prefix}{k}: file {tuple(got[k].shape)}, model {shape[k]}" for k in mismatched[:10]]
    if len(mismatched) > 10:
        lines.append(f"... and {len(mismatched) - 10} more shape mismatches")
    return lines


def check_state_dict(
    expected: Mapping[str, Any], got: Mapping[str, Any], source: str, prefix: str = "",
    unplaced: tuple[str, ...] = (), hint: str = "",
) -> None:
    """Raise :class:`CheckpointMismatch` naming ``source`` unless ``got`` has exactly the keys and
    shapes of ``expected`` (see :func:`state_dict_diff`); ``hint`` ends the message."""
    diff = state_dict_diff(expected, got, prefix, unplaced)
    if diff:
        raise CheckpointMismatch(
            f"{source}: the weights do not fit the model built from its config:\n  " + "\n  ".join(diff)
            + (f"\n  ({hint})" if hint else "")
        )


def upgrade_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every submodule's ``upgrade_state_dict`` applied to the keys under its name."""
    state = dict(state)
    for name, sub in module.named_modules():
        upgrade = getattr(sub, "upgrade_state_dict", None)
        if upgrade is None:
            continue
        head = f"{name}." if name else ""
        own = {k[len(head):]: v for k, v in state.items() if k.startswith(head)}
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        state.update({head + k: v for k, v in upgrade(own).items()})
    return state


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, prefix: str = "") -> None:
    """Load ``state`` into ``module``: every key and shape must fit (:func:`check_state_dict`), after
    the module's own key upgrades. A module built on the meta device (no memory, no random init)
    takes the file's tensors as they are (``assign``); otherwise they are copied in."""
    state = upgrade_state_dict(module, state)
    check_state_dict(module.state_dict(), state, source, prefix,
                     hint="was the file written by another version of the model code? re-import or re-train it")
    on_meta = any(t.is_meta for t in module.state_dict().values())
    module.load_state_dict(state, strict=True, assign=on_meta)
