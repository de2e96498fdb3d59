"""The contract between the trainer and the things it trains.

The trainer (``audiossl.train``) knows nothing of BEATs or EAT. A *task* tells it how to build a
*training model*: an ``nn.Module`` whose forward turns a batch into a loss. Everything the trainer
calls on the training model is listed in :class:`AbsTrainModel`.

A batch (built by ``audiossl.data.dataset``) is a dict:

    feats:        (B, T, F) float32, normalised log-mel fbank, zero-padded *before* normalisation
                  up to the batch's T (a fixed target length where the config sets one)
    padding_mask: (B, T) bool, True on padded frames (all False when every clip fills T)
    targets:      (B, C) float32 multi-hot labels (only when the data dir has utt2label)
    utt_ids:      list[str] of B utterance ids
    clip, keep:   (B,) long and (B,) bool, validation windows only (``FeatsWindows``): the clip each
                  window belongs to and whether scoring counts it; models ignore them

A task is a class of classmethods registered by name (``@register_task("eat_pretrain")``); its
``ModelConfig`` dataclass receives the ``model:`` section of the YAML config.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

TASKS: dict[str, type["AbsTask"]] = {}


def register_task(name: str):
    """Class decorator: make a task available as ``task: <name>`` in configs."""

    def wrap(cls):
        assert name not in TASKS, f"task {name!r} registered twice"
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def get_task(name: str) -> type["AbsTask"]:
    """The task registered as ``name``; imports the built-in tasks on first use."""
    import audiossl.tasks.registry  # noqa: F401  (registers the built-in tasks)

    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


@dataclass
class DataInfo:
    """What the data tells the task when it builds the model."""

    num_classes: int = 0  # from labels.txt; 0 for unlabelled pre-training data
    feat_dim: int = 128
    label_names: list[str] = field(default_factory=list)
    multi_label_clips: int = 0  # clips of the train set with more than one label (utt2label)
    source: str = ""  # where the data came from (the train dump dir), for messages


class AbsTrainModel(nn.Module):
    """A model the trainer can train. Only ``forward`` is required; the rest are optional hooks.

    forward(batch) -> (loss, stats, weight):
        loss:   scalar tensor to minimise (already averaged as the task wants);
        stats:  dict name -> detached scalar tensor, logged and averaged over validation (by weight);
                keep them on device, the trainer calls .item() only at log intervals;
        weight: number of examples the stats stand for (int or scalar tensor), for weighted means.
    Stat names must be the same on every step and every rank (they are averaged across ranks).
    """

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        raise NotImplementedError

    # --- optional hooks ---------------------------------------------------------------------
    def after_optimizer_step(self, num_updates: int) -> None:
        """Called after every optimiser update with the new update count (EMA teachers)."""

    def no_weight_decay(self) -> set[str]:
        """Parameter names (as in named_parameters()) excluded from weight decay."""
        return set()

    def layer_id(self, param_name: str) -> int | None:
        """Depth for layer-wise LR decay (0 = input, num_layers + 1 = head); None: no decay."""
        return None

    num_layers: int = 0
    multi_label: bool = False  # validation metrics: mAP-style (True) or also accuracy (False)
    find_unused_parameters: bool = False  # passed to DDP; True for models with layer drop

    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, C) scores for validation metrics over a whole set (mAP, accuracy); classifiers only."""
        raise NotImplementedError

    def export(self) -> dict[str, Any]:
        """What downstream stages need besides the state dict (saved in model.pt as ``extra``)."""
        return {}


class AbsTask(abc.ABC):
    """A thing we train. Classmethods only."""

    name: ClassVar[str] = ""
    ModelConfig: ClassVar[type]  # a dataclass; the config's ``model:`` section is loaded into it

    @classmethod
    @abc.abstractmethod
    def build_model(cls, model_cfg: Any, data_info: DataInfo) -> AbsTrainModel:
        """A fresh training model (weights initialised, or loaded from model_cfg's init file)."""

    @classmethod
    def build_encoder(cls, model_cfg: Any) -> nn.Module:
        """The encoder alone (an ``AbsEncoder``) as it sits at ``<training model>.encoder``;
        fine-tuning loads ``encoder.*`` keys of a model.pt from this task into it."""
        raise NotImplementedError(f"task {cls.name!r} has no encoder to fine-tune")
