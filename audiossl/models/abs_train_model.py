"""The contract between the trainer and the models it trains.

The trainer (``audiossl.train``) knows nothing of BEATs or EAT: a task (``audiossl.tasks``) builds a
*training model*, an ``nn.Module`` whose forward turns a batch into a loss, and everything the trainer
calls on it is listed in :class:`AbsTrainModel`.

A batch (built by ``audiossl.data.dataset``) is a dict:

    feats:        (B, T, F) float32, normalised log-mel fbank, zero-padded *before* normalisation
                  up to the batch's T (a fixed target length where the config sets one)
    padding_mask: (B, T) bool, True on padded frames (all False when every clip fills T)
    targets:      (B, C) float32 multi-hot labels (only when the data dir has utt2label)
    utt_ids:      list[str] of B utterance ids
    clip, keep:   (B,) long and (B,) bool, validation windows only (``FeatsWindows``): the clip each
                  window belongs to and whether scoring counts it; models ignore them
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


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
