"""Exponential moving averages of parameters (EAT's teacher, optional weight EMA in fine-tuning)."""
from __future__ import annotations

from typing import Iterable

import torch


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
