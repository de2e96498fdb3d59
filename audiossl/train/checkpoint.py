"""Checkpoints: atomic writes, the exact-resume training state, and the ``model.pt`` hand-off file.

``model.pt`` is what one stage hands to the next (pre-training -> fine-tuning -> scoring), whether it
came from our trainer or from ``audiossl.bin.import_checkpoint``:

    {"format": "audiossl-model", "version": 1,
     "task": <registered task name>, "config": <resolved config dict, with its "model" section>,
     "model": <training model state dict>, "extra": <task-specific dict, e.g. label names>}
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

MODEL_FORMAT = "audiossl-model"
MODEL_VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same directory, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact (rename is atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
