"""EAT's light CNN decoder (data2vec 2.0 ``Decoder2d``): predicts teacher targets at masked patches.

The student's outputs for the visible patches are put back on the (time patches x frequency patches)
grid; every masked slot gets fresh N(0, mask_noise_std^2) noise (``mask_noise_std`` 0.01) and no
position is added. Then ``decoder_layers`` (6) blocks of

    grouped Conv2d (kernel 3, padding 1, groups 16) -> LayerNorm over channels (no affine) -> GELU

each with a residual connection (skipped only where the channel count changes, i.e. block 0 when
``decoder_dim != embed_dim``), and a final Linear ``decoder_dim -> embed_dim``.

Parameter names follow the official checkpoint: ``blocks.{i}.0.{weight,bias}`` (the convolutions;
the LayerNorm has no parameters) and ``proj.{weight,bias}``. The official LayerNorm is fairseq's
default, eps 1e-5.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, H, W), without affine parameters."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, (self.channels,), eps=self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class EATDecoder(nn.Module):
    """CNN decoder over the patch grid; see the module docstring."""

    def __init__(
        self,
        embed_dim: int = 768,
        decoder_dim: int = 768,
        decoder_layers: int = 6,
        decoder_kernel: int = 3,
        decoder_groups: int = 16,
    ):
        super().__init__()
        assert decoder_kernel % 2 == 1, f"decoder_kernel must be odd (same-size padding), got {decoder_kernel}"
        for dim in (embed_dim, decoder_dim):
            assert dim % decoder_groups == 0, f"channels {dim} must be a multiple of decoder_groups {decoder_groups}"
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim

        def block(in_dim: int) -> nn.Sequential:
            conv = nn.Conv2d(in_dim, decoder_dim, decoder_kernel, padding=decoder_kernel // 2, groups=decoder_groups)
            return nn.Sequential(conv, ChannelLayerNorm(decoder_dim), nn.GELU())

        self.blocks = nn.ModuleList(
            [block(embed_dim if i == 0 else decoder_dim) for i in range(decoder_layers)]
        )
        self.proj = nn.Linear(decoder_dim, embed_dim)
        # Init: PyTorch defaults for the convolutions and for proj (the official decoder's
        # reset_parameters() re-runs nn.Linear's default init after init_bert_params).

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, D) tokens on the full grid (masked slots already filled) -> (B, N, D) predictions."""
        B, N, D = x.shape
        H, W = grid
        assert N == H * W, f"{N} tokens do not fill a {H}x{W} patch grid"
        x = x.transpose(1, 2).reshape(B, D, H, W)  # (B, D, H, W), token h * W + w at [h, w]
        for block in self.blocks:
            y = block(x)
            x = y + x if y.shape[1] == x.shape[1] else y
        x = x.reshape(B, self.decoder_dim, N).transpose(1, 2)  # (B, N, decoder_dim)
        return self.proj(x)


def decoder_input(
    visible: torch.Tensor,
    keep_ids: torch.Tensor,
    num_tokens: int,
    noise_std: float,
) -> torch.Tensor:
    """Put visible outputs back on the grid and fill masked slots with N(0, noise_std^2) noise.

    Args:
        visible: (B, K, D) student outputs of the visible patches (CLS removed).
        keep_ids: (B, K) their token indices.
        num_tokens: N, the number of patches of the grid.

    Returns:
        (B, N, D).
    """
    B, K, D = visible.shape
    x = torch.randn(B, num_tokens, D, device=visible.device, dtype=visible.dtype) * noise_std
    return x.scatter(1, keep_ids.unsqueeze(-1).expand(B, K, D), visible)
