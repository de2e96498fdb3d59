"""Exponential moving averages of parameters (EAT's teacher, optional weight EMA in fine-tuning)."""
from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def ema_update_(target: Iterable[torch.Tensor], source: Iterable[torch.Tensor], decay: float) -> None:
    """In place: target = decay * target + (1 - decay) * source, one fused foreach call.

    ``source`` values are cast to each target's dtype, so an fp32 teacher can follow a bf16 student.
    """
    target, source = list(target), list(source)
    assert len(target) == len(source), f"EMA needs matching tensors, got {len(target)} and {len(source)}"
    if not target:
        return
    source = [s.detach().to(t.dtype) for t, s in zip(target, source)]
    torch._foreach_lerp_(target, source, 1.0 - decay)


class WeightEMA:
    """An EMA copy of a whole model (the trainer's ``trainer.ema_decay``), kept in fp32 in eval mode.

    Floating-point parameters follow ``ema = decay * ema + (1 - decay) * param`` after every update;
    buffers (running statistics, codebooks) are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float):
        assert 0.0 < decay < 1.0, f"EMA decay must be in (0, 1), got {decay}"
        self.decay = decay
        self.module = copy.deepcopy(model).float().eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs = [
            (e, p) for e, p in zip(self.module.parameters(), model.parameters()) if e.is_floating_point()
        ]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_update_([e for e, _ in self._pairs], [p for _, p in self._pairs], self.decay)
        for eb, b in zip(self.module.buffers(), model.buffers()):
            eb.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
