"""One optimiser update, as the trainer runs it and the benchmark times it.

``UpdateStep.update`` = :meth:`~UpdateStep.forward_backward` over the update's micro-batches (DDP
synchronises only the last), then :meth:`~UpdateStep.optimizer_step`, then
:meth:`~UpdateStep.after_step` (the model's ``after_optimizer_step`` hook, e.g. EAT's EMA teacher,
and the trainer's weight EMA). Nothing in it moves a value to the host: stats, gradient norms and
the first update whose loss or gradient norm was not finite stay on the device until the trainer
logs (:class:`LogInterval`, ``nonfinite_update``).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterable

import torch
from torch import nn

from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.models.ema import WeightEMA


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` for precision "bf16"; nothing for "fp32"."""
    assert precision in ("bf16", "fp32"), f"precision must be bf16 or fp32, got {precision!r}"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclasses.dataclass
class LogInterval:
    """What the current log interval has summed so far: per stat, the sum over micro-batches (on the
    device) and how many reported it; the updates and their gradient norms. Saved in checkpoints, so
    that the first line after a resume averages the same updates as an uninterrupted run's."""

    sums: dict[str, Any] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    updates: int = 0
    gnorm: Any = 0.0

    def add_stats(self, stats: dict[str, Any], device: torch.device) -> None:
        for name, v in stats.items():
            v = torch.as_tensor(v, device=device).detach().float()
            self.sums[name] = self.sums[name] + v if name in self.sums else v
            self.counts[name] = self.counts.get(name, 0) + 1

    def state(self) -> dict[str, Any]:
        """This rank's part, as plain numbers."""
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "counts": dict(self.counts)}

    @classmethod
    def restore(cls, saved: dict[str, Any], rank: int, device: torch.device) -> "LogInterval":
        """The interval of rank ``rank`` from what the trainer's checkpoint stored: every saved rank's
        sums go to rank 0 (the logged value is their sum over ranks anyway, whatever the world size
        now); the update count and gradient norms (equal on every rank) to all."""
        iv = cls(updates=int(saved["updates"]))
        iv.gnorm = torch.tensor(saved["gnorm"], dtype=torch.float32, device=device)
        if rank == 0:
            for part in saved["ranks"]:
                for k, v in part["sums"].items():
                    t = torch.tensor(v, dtype=torch.float32, device=device)
                    iv.sums[k] = iv.sums[k] + t if k in iv.sums else t
                    iv.counts[k] = iv.counts.get(k, 0) + int(part["counts"][k])
        return iv


class UpdateStep:
    """The update sequence over a training model and its optimiser and schedule.

    Args:
        raw_model: the training model itself (hooks, parameters).
        model: what forward calls: ``raw_model``, or it wrapped in DDP and/or ``torch.compile``.
        optimizer, scheduler: built for ``raw_model`` (``audiossl.train.optim``).
        clip_norm: clip the gradient norm to this (0: measure it only).
        precision: "bf16" (autocast) or "fp32".
        ddp: the DDP wrapper when distributed (its ``no_sync`` skips all but the last micro-batch's
            gradient all-reduce).
        ema: the trainer's weight EMA, updated after every update, if any.
    """

    def __init__(self, raw_model: AbsTrainModel, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 clip_norm: float, device: torch.device, precision: str = "fp32",
                 ddp: nn.parallel.DistributedDataParallel | None = None, ema: WeightEMA | None = None):
        self.raw_model, self.model = raw_model, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.clip_norm, self.device, self.precision = clip_norm, device, precision
        self.ddp, self.ema = ddp, ema
        self.params = [p for p in raw_model.parameters() if p.requires_grad]
        # the first update (1-based) whose loss or gradient norm was NaN/inf; -1: none so far
        self.nonfinite_update = torch.full((), -1, dtype=torch.long, device=device)

    def forward_backward(self, batches: Iterable[dict[str, Any]], accum: int, interval: LogInterval,
                         num_updates: int, eager: bool = False) -> int:
        """Forward and backward ``accum`` micro-batches (each loss divided by ``accum``), their stats
        summed into ``interval``; then the gradient norm, clipping and the non-finite flag of update
        ``num_updates + 1``. ``eager`` calls the bare model (no DDP, no compile). Returns the clips."""
        model = self.raw_model if eager else self.model
        loss_sum = torch.zeros((), device=self.device)
        clips, k = 0, -1
        for k, batch in enumerate(batches):
            last = k == accum - 1
            sync = self.ddp.no_sync() if (self.ddp is not None and not last and not eager) else contextlib.nullcontext()
            with sync:
                with autocast(self.device, self.precision):
                    loss, stats, _ = model(batch)
                (loss / accum).backward()
            loss_sum += loss.detach().float()
            stats = dict(stats)
            stats.setdefault("loss", loss.detach())
            interval.add_stats(stats, self.device)
            clips += int(batch["feats"].shape[0])
        assert k == accum - 1, f"an update takes {accum} micro-batches, got {k + 1}"
        grads = [p.grad for p in self.params if p.grad is not None]
        gnorm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else torch.zeros((), device=self.device)
        if self.clip_norm > 0 and grads:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip_norm, gnorm, foreach=True)
        bad = ~torch.isfinite(loss_sum) | ~torch.isfinite(gnorm)
        self.nonfinite_update = torch.where(bad & (self.nonfinite_update < 0), num_updates + 1, self.nonfinite_update)
        interval.gnorm = interval.gnorm + gnorm.detach().float()
        interval.updates += 1
        return clips

    def optimizer_step(self, num_updates: int) -> float:
        """The optimiser step that makes update ``num_updates + 1``; returns the LR it used."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_lr()
        self.scheduler.set_update(num_updates + 1)
        return lr

    def after_step(self, num_updates: int) -> None:
        """After update ``num_updates``: the model's hook (EMA teachers), then the weight EMA."""
        self.raw_model.after_optimizer_step(num_updates)
        if self.ema is not None:
            self.ema.update(self.raw_model)

    def update(self, batches: Iterable[dict[str, Any]], accum: int, interval: LogInterval,
               num_updates: int) -> tuple[int, float]:
        """Update ``num_updates + 1``, whole; returns (clips, the LR it used)."""
        clips = self.forward_backward(batches, accum, interval, num_updates)
        lr = self.optimizer_step(num_updates)
        self.after_step(num_updates + 1)
        return clips, lr
