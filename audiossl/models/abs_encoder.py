"""What every pre-trained encoder offers to fine-tuning, scoring and feature extraction.

An encoder maps normalised log-mel features to a sequence of token vectors. BEATs and EAT both
implement it, so the classifier, the fine-tuning task and ``audiossl.bin.extract`` work with either.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncoderOutput:
    """Output of :meth:`AbsEncoder.forward`.

    Attributes:
        tokens: (B, N, D) patch token vectors in time-major patch order, CLS excluded.
        padding_mask: (B, N) bool, True where a token covers only padding; None if nothing is padded.
        cls: (B, D) the utterance (CLS) token where the model has one, else None.
        hidden_states: outputs of every layer, (B, N, D) each, CLS excluded, when asked for.
    """

    tokens: torch.Tensor
    padding_mask: torch.Tensor | None = None
    cls: torch.Tensor | None = None
    hidden_states: list[torch.Tensor] | None = None


class AbsEncoder(nn.Module):
    """Base class of BEATs and EAT encoders.

    Subclasses set ``embed_dim`` and ``num_layers`` and implement :meth:`forward` and
    :meth:`layer_id`.
    """

    embed_dim: int
    num_layers: int

    def forward(
        self,
        feats: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode (B, T, F) normalised fbank; padding_mask is (B, T) bool, True on padded frames."""
        raise NotImplementedError

    def layer_id(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise LR decay: 0 for everything below the first block,
        i + 1 for block i, ``num_layers + 1`` for anything above the last block."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Names of parameters (relative to the encoder) that should not be weight-decayed."""
        return set()
