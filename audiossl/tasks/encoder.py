"""Any task's encoder, built from a saved config and loaded from a ``model.pt``: the one way every
stage (fine-tuning, scoring, probes, extraction, tokenizer teachers, the audio API) gets an encoder.

A model.pt says how its encoder was built:

* a pre-trained model of a task with ``build_encoder`` (``beats_ssl``, ``eat_pretrain``, ...): its own
  task and ``config["model"]``;
* a ``finetune`` one: ``encoder_task`` and ``encoder`` (that task's ModelConfig) in its
  ``config["model"]`` (or, in older files, its ``extra``).
"""
from __future__ import annotations

import copy
import os
from typing import Any, Mapping

import torch

from audiossl.models.abs_encoder import AbsEncoder
from audiossl.models.checkpoint import load_model, load_strict
from audiossl.tasks.abs_task import get_task
from audiossl.train.config import dataclass_from_dict, plain

FINETUNE_TASK = "finetune"


def encoder_config(task_name: str, cfg_dict: dict[str, Any], where: str) -> Any:
    """The ModelConfig dataclass of task ``task_name`` from a saved dict (unknown keys are errors)."""
    return dataclass_from_dict(get_task(task_name).ModelConfig, dict(cfg_dict), where)


def build_encoder(task_name: str, cfg_dict: dict[str, Any], where: str = "model.encoder") -> tuple[AbsEncoder, dict]:
    """An untrained encoder of task ``task_name`` built from its ModelConfig dict.

    Returns:
        (encoder, the resolved ModelConfig as a plain dict).
    """
    mcfg = encoder_config(task_name, cfg_dict, where)
    encoder = get_task(task_name).build_encoder(mcfg)
    assert isinstance(encoder, AbsEncoder), (
        f"task {task_name!r}: build_encoder returned {type(encoder).__name__}, not an AbsEncoder"
    )
    return encoder, plain(mcfg)


def encoder_source(obj: Mapping[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    """(encoder task, encoder ModelConfig dict) that a loaded model.pt was built with."""
    config = obj.get("config") or {}
    model_section = config.get("model") or {}
    if obj["task"] != FINETUNE_TASK:
        return obj["task"], copy.deepcopy(model_section)
    extra = obj.get("extra") or {}
    task = model_section.get("encoder_task") or extra.get("encoder_task")
    cfg = model_section.get("encoder") or extra.get("encoder")
    if not task or cfg is None:
        raise ValueError(
            f"{path}: a 'finetune' model.pt must say how its encoder was built: config['model'] needs "
            "'encoder_task' and 'encoder' (the encoder task's ModelConfig); re-import the checkpoint "
            "with audiossl.bin.import_checkpoint"
        )
    return task, copy.deepcopy(cfg)


def sub_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with the prefix taken off."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_encoder(path: str | os.PathLike | Mapping[str, Any], source: str | None = None) -> AbsEncoder:
    """The encoder of any model.pt (pre-trained or fine-tuned), weights loaded strictly, in eval mode.

    It is built on the meta device (no memory, no random init) and takes the file's tensors, so a
    large file is neither read twice nor initialised for nothing. ``path`` may also be a model.pt
    already read (``load_model``), with ``source`` naming it in messages.
    """
    obj = path if isinstance(path, Mapping) else load_model(path)
    name = (source or "model.pt") if isinstance(path, Mapping) else str(path)
    task_name, cfg = encoder_source(obj, name)
    with torch.device("meta"):
        encoder, _ = build_encoder(task_name, cfg, where=f"{name}: encoder config")
    load_strict(encoder, sub_state(obj["model"], "encoder."), f"{name} (task {obj['task']!r})", prefix="encoder.")
    return encoder.eval()
