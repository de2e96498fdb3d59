"""EAT's EMA teacher schedule, its targets, and the utterance-frame objective.

Teacher (data2vec 2.0, ``ema_encoder_only: false``): a copy of the whole encoder (patch conv, CLS,
input LayerNorm, blocks; not the decoder), updated after every optimiser step as
``teacher = d * teacher + (1 - d) * student`` with d annealed linearly from ``ema_decay`` 0.9998 to
``ema_end_decay`` 0.99999 over the first ``ema_anneal_end_step`` 100k updates, then held.

Targets (``instance_norm_target_layer: true``, ``layer_norm_targets: true``,
``average_top_k_layers: 12``, ``end_of_block_targets: false``): the FFN outputs of the top K
blocks, before the residual, CLS excluded; each instance-normalised (per clip and channel, over the
tokens, no affine), averaged over the K blocks, then layer-normalised over channels (no affine).
Both norms use PyTorch's default eps 1e-5, as the official ``F.instance_norm`` / ``F.layer_norm``.

Objective: L = L_frame + cls_loss * L_utt with squared errors summed over channels and divided by
sqrt(D) (``loss_scale: null`` -> 1/sqrt(dim)):

* frame term: decoder prediction vs target at every masked patch of every clone;
* utterance term: the student's CLS output of each clone vs the mean of the clip's targets over all
  its patches.

Reduction, option ``loss_scale``:

* ``official``: L_frame is the mean over masked patches; L_utt is the *sum* over the clones in the
  batch (fairseq normalises by the number of masked patches, and the official code multiplies the
  utterance loss by that number first). Its weight therefore grows with the per-device batch:
  12 clips x 16 clones = 192 in the paper setup, i.e. the official objective equals the per_clip
  one with cls_loss = 192.
* ``per_clip``: both terms are means (over masked patches, over clones), so each clip contributes
  the same whatever the batch size; cls_loss is the actual relative weight.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSS_SCALES = ("official", "per_clip")


def ema_decay_at(num_updates: int, start: float, end: float, anneal_updates: int) -> float:
    """Teacher decay after ``num_updates`` optimiser updates: linear from ``start`` to ``end`` over
    ``anneal_updates`` updates, then ``end`` (official ``get_annealed_rate``)."""
    if start == end or num_updates >= anneal_updates:
        return end
    return end - (end - start) * (1.0 - num_updates / anneal_updates)


@torch.no_grad()
def make_targets(ffn_outputs: list[torch.Tensor], top_k: int, final_layer_norm: bool = True) -> torch.Tensor:
    """Average the instance-normalised FFN outputs of the top ``top_k`` blocks, then layer-norm.

    Args:
        ffn_outputs: per block, (B, N, D) FFN outputs of the teacher, CLS already removed.
        top_k: how many of the last blocks to average.
        final_layer_norm: apply the final LayerNorm (always, in training; off only to inspect).

    Returns:
        (B, N, D) float32 targets.
    """
    assert 1 <= top_k <= len(ffn_outputs), f"top_k {top_k} must be in [1, {len(ffn_outputs)}]"
    y = None
    for out in ffn_outputs[-top_k:]:
        out = F.instance_norm(out.float().transpose(1, 2)).transpose(1, 2)  # (B, N, D), per (b, d) over N
        y = out if y is None else y + out
    y = y / top_k
    return F.layer_norm(y, y.shape[-1:]) if final_layer_norm else y


def squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the last axis and divided by sqrt(D): (..., D) -> (...)."""
    D = pred.shape[-1]
    return (pred.float() - target.float()).pow(2).sum(dim=-1) / math.sqrt(D)


def eat_loss(
    frame_pred: torch.Tensor,
    frame_target: torch.Tensor,
    cls_pred: torch.Tensor,
    cls_target: torch.Tensor,
    cls_loss: float,
    loss_scale: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The utterance-frame objective; see the module docstring.

    Args:
        frame_pred, frame_target: (B * C, M, D) predictions and targets at the M masked patches.
        cls_pred, cls_target: (B * C, D) CLS outputs and utterance targets, one row per clone.
        cls_loss: weight of the utterance term (lambda).
        loss_scale: "official" or "per_clip".

    Returns:
        (loss, frame term, utterance term), with loss = frame + cls_loss * utterance.
    """
    assert loss_scale in LOSS_SCALES, f"loss_scale must be one of {LOSS_SCALES}, got {loss_scale!r}"
    frame = squared_error(frame_pred, frame_target).mean()
    utt_per_clone = squared_error(cls_pred, cls_target)  # (B * C,)
    utt = utt_per_clone.sum() if loss_scale == "official" else utt_per_clone.mean()
    return frame + cls_loss * utt, frame, utt


@torch.no_grad()
def mean_channel_std(x: torch.Tensor) -> torch.Tensor:
    """The official ``compute_var`` log value: per-channel std over all rows, averaged over channels."""
    x = x.reshape(-1, x.shape[-1]).float()
    return torch.sqrt(x.var(dim=0) + 1e-6).mean()
