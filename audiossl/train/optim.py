"""AdamW with parameter groups (weight decay, layer-wise LR decay) and the warm-up + cosine schedule.

Parameter groups: a parameter gets no weight decay when the model lists it in
``no_weight_decay()``, or -- unless ``decay_norm_and_bias`` -- when it is 1-D (norm scales, biases)
or named ``*.bias``. With ``layer_decay < 1`` a parameter at depth ``layer_id`` (from
``model.layer_id(name)``; 0 = input, ``model.num_layers + 1`` = head) learns at
``lr x layer_decay^(num_layers + 1 - layer_id)``; ``layer_id`` None means no decay. Each group
carries its ``lr_scale``; the schedule sets ``lr = lr_at(update) x lr_scale``.

Schedule by update count n = 1..max_updates (the LR used BY the n-th update):
``lr x n / warmup`` for n <= warmup (linear from 0), then
``min_lr + (lr - min_lr) x (1 + cos(pi x (n - warmup) / (max_updates - warmup))) / 2``,
so the warm-up ends at the peak and the cosine reaches ``min_lr`` at the last update; a group
learns at that times its ``lr_scale`` (``group_schedule: scaled``).

``group_schedule: fairseq`` gives each group the schedule fairseq's composite optimiser builds
for it (``fairseq/optim/composite.py``: one ``cosine`` scheduler per group, its ``lr`` the scaled
peak; ``fairseq/optim/lr_scheduler/cosine_lr_scheduler.py``): with ``peak = lr x lr_scale`` and
``floor = min(min_lr, peak)``, the n-th update uses step k = n - 1 of
``floor + k x (peak - floor) / warmup`` for k < warmup (warm-up from ``floor``), then
``floor + (peak - floor) x (1 + cos(pi x (k - warmup) / (max_updates - warmup))) / 2``.
A group whose peak is below ``min_lr`` keeps its peak throughout; the others end at ``min_lr``
itself, not at a scaled one.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from audiossl.train.config import OptimConfig

logger = logging.getLogger(__name__)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups of ``model``'s trainable parameters (see module docstring).

    Each group has keys params, names, weight_decay, lr_scale (and lr, set by the scheduler).
    """
    no_decay_names = set(getattr(model, "no_weight_decay", lambda: set())())
    num_layers = int(getattr(model, "num_layers", 0) or 0)
    layer_id = getattr(model, "layer_id", None)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = name in no_decay_names or (not cfg.decay_norm_and_bias and (p.ndim <= 1 or name.endswith(".bias")))
        wd = 0.0 if no_decay else cfg.weight_decay
        scale = 1.0
        if cfg.layer_decay != 1.0 and layer_id is not None:
            lid = layer_id(name)
            if lid is not None:
                assert 0 <= lid <= num_layers + 1, f"layer_id({name!r}) = {lid} outside [0, num_layers + 1 = {num_layers + 1}]"
                scale = cfg.layer_decay ** (num_layers + 1 - lid)
        g = groups.setdefault((wd, scale), {"params": [], "names": [], "weight_decay": wd, "lr_scale": scale})
        g["params"].append(p)
        g["names"].append(name)
    unknown = no_decay_names - {n for n, _ in model.named_parameters()}
    if unknown:
        logger.warning("no_weight_decay() names unknown parameters: %s", ", ".join(sorted(unknown)[:5]))
    out = sorted(groups.values(), key=lambda g: (g["lr_scale"], g["weight_decay"]))
    for g in out:
        logger.info(
            "param group: %d tensors, %d params, weight_decay %g, lr_scale %.4g",
            len(g["params"]), sum(p.numel() for p in g["params"]), g["weight_decay"], g["lr_scale"],
        )
    return out


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`: the fused kernel on CUDA, foreach on CPU."""
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    impl = {"fused": True} if device.type == "cuda" else {"foreach": True}
    opt = torch.optim.AdamW(groups, lr=lr_at(1, cfg), betas=tuple(cfg.betas), eps=cfg.eps, **impl)
    for g in opt.param_groups:
        g["lr"] = group_lr_at(1, cfg, g["lr_scale"])
    return opt


def resolve_epoch_schedule(cfg: OptimConfig, updates_per_epoch: int) -> None:
    """Turn ``max_epochs`` / ``warmup_epochs`` (when > 0) into ``max_updates`` / ``warmup_updates``
    for a train set of ``updates_per_epoch`` updates, in place."""
    assert updates_per_epoch > 0, f"updates_per_epoch must be positive, got {updates_per_epoch}"
    if cfg.max_epochs < 0 or cfg.warmup_epochs < 0:
        raise ValueError(f"optim.max_epochs and optim.warmup_epochs must be >= 0 (got {cfg.max_epochs}, {cfg.warmup_epochs})")
    if cfg.max_epochs > 0:
        cfg.max_updates = max(1, round(cfg.max_epochs * updates_per_epoch))
    if cfg.warmup_epochs > 0:
        cfg.warmup_updates = max(1, round(cfg.warmup_epochs * updates_per_epoch))
    if cfg.max_epochs > 0 or cfg.warmup_epochs > 0:
        logger.info(
            "schedule in epochs: %g epochs (warm-up %g) of %d updates = %d updates (warm-up %d)",
            cfg.max_epochs, cfg.warmup_epochs, updates_per_epoch, cfg.max_updates, cfg.warmup_updates,
        )
    if cfg.warmup_updates > cfg.max_updates > 0:
        logger.warning("optim: warm-up (%d updates) is longer than training (%d updates): the LR never peaks",
                       cfg.warmup_updates, cfg.max_updates)


def lr_at(n: int, cfg: OptimConfig) -> float:
    """The peak-scaled learning rate of the n-th update (n = 1..max_updates; see module docstring)."""
    warmup, total = cfg.warmup_updates, cfg.max_updates
    n = min(max(n, 1), max(total, 1))
    if warmup > 0 and n <= warmup:
        return cfg.lr * n / warmup
    if total <= warmup:
        return cfg.lr
    progress = (n - warmup) / (total - warmup)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def group_lr_at(n: int, cfg: OptimConfig, lr_scale: float) -> float:
    """The learning rate of the n-th update for a parameter group of ``lr_scale`` under
    ``cfg.group_schedule`` (see module docstring)."""
    if cfg.group_schedule == "scaled":
        return lr_at(n, cfg) * lr_scale
    peak = cfg.lr * lr_scale
    floor = min(cfg.min_lr, peak)
    warmup, total = cfg.warmup_updates, cfg.max_updates
    k = min(max(n, 1), max(total, 1)) - 1
    if k < warmup:
        return floor + k * (peak - floor) / warmup
    if total <= warmup:
        return peak
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * (k - warmup) / (total - warmup)))


class WarmupCosineScheduler:
    """Sets each group's lr to ``group_lr_at(n, lr_scale)`` before the n-th update; stateless but
    for n. ``get_lr`` is the LR of a group of scale 1 (the head's), the one the trainer logs."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig):
        self.optimizer = optimizer
        self.cfg = cfg
        self.num_updates = 0
        self.set_update(0)

    def set_update(self, num_updates: int) -> float:
        """``num_updates`` updates are done; set the LR of the next one and return it."""
        self.num_updates = num_updates
        for g in self.optimizer.param_groups:
            g["lr"] = group_lr_at(num_updates + 1, self.cfg, g.get("lr_scale", 1.0))
        return self.get_lr()

    def get_lr(self) -> float:
        return group_lr_at(self.num_updates + 1, self.cfg, 1.0)

    def state_dict(self) -> dict[str, int]:
        return {"num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_update(int(state["num_updates"]))


def describe_schedule(cfg: OptimConfig, global_batch: int, clips_per_epoch: int | None) -> list[str]:
    """The effective schedule of ``cfg`` as printable lines (``bin/train.py --dry-run``): updates and
    warm-up (resolved from epochs when the config gives epochs and ``clips_per_epoch`` is known),
    epochs of the train set, and the LR at a few points. ``cfg`` is resolved in place."""
    lines = []
    if clips_per_epoch is not None:
        from audiossl.data.sampler import updates_per_epoch

        per_epoch = updates_per_epoch(clips_per_epoch, global_batch)  # the sampler's rule
        resolve_epoch_schedule(cfg, per_epoch)
        lines.append(f"train set: {clips_per_epoch} clips per epoch = {per_epoch} updates of {global_batch} clips")
    elif cfg.max_epochs > 0 or cfg.warmup_epochs > 0:
        lines.append("train set unknown (data.train has no feats.scp or wav.scp yet): the epoch-based lengths cannot be resolved")
        return lines
    total, warmup = cfg.max_updates, cfg.warmup_updates
    epochs = f" = {total * global_batch / clips_per_epoch:.2f} epochs" if clips_per_epoch else ""
    lines.append(f"updates: {total}{epochs}; warm-up {warmup}; {total * global_batch} clips seen")
    points = sorted({1, max(warmup, 1), total // 4, total // 2, 3 * total // 4, total} - {0})
    lines.append("lr: " + ", ".join(f"{group_lr_at(n, cfg, 1.0):.3g} at {n}" for n in points if n <= max(total, 1))
                 + f" (scale-1 groups; schedule per group: {cfg.group_schedule})")
    return lines
