"""EAT encoder: a post-LN ViT-B over 16 x 16 patches of a (T x 128) log-mel fbank.

EAT ("EAT: Self-Supervised Pre-Training with Efficient Audio Transformer", Chen et al., IJCAI 2024;
official code cwx-worst-one/EAT, built on fairseq's data2vec 2.0) encodes a clip as:

    fbank (B, T, 128) -> Conv2d 16x16/16 with bias -> (B, T/16 * 8, D) tokens, time-major
    + fixed 2-D sin-cos positions (frequency half of the channels first, then the time half)
    -> CLS token prepended (no position) -> one input LayerNorm
    -> 12 post-LN blocks, x = norm1(x + attn(x)); x = norm2(x + mlp(x))      (no final LayerNorm)

In pre-training the student sees only the visible patches (gathered by index after the positions are
added), the EMA teacher sees all of them. Each block also returns its FFN output before the residual:
the teacher's targets are built from those (see :mod:`audiossl.models.eat.targets`).

Input length: the stride-16 convolution makes one token row per 16 frames; frames past the last full
multiple of 16 are dropped, as in the official patch embedding. Padding: the official model pads
clips with zeros (before normalisation) to a fixed length and attends to every patch; we do the same
and only *report* which tokens cover padding (``EncoderOutput.padding_mask``) for pooling.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput

logger = logging.getLogger(__name__)


@dataclass
class EATEncoderConfig:
    """Architecture of the EAT encoder; defaults are EAT-base (config/pretraining_AS2M.yaml).

    Attributes:
        embed_dim: token width D (768; EAT-large 1024).
        depth: number of Transformer blocks (12; large 24).
        num_heads: attention heads (12; large 16).
        mlp_ratio: FFN hidden width / D (4).
        patch_size: square patch side in frames and mel bins (16).
        num_mel_bins: fbank bins F (128), a multiple of ``patch_size``.
        max_time_patches: rows of the position table in time patches (official ``max_length`` 768,
            i.e. 768 x 16 frames = 122.9 s; checkpoints before that change had 64, i.e. 512 rows).
        norm_eps: epsilon of every LayerNorm in the encoder (official ``norm_eps`` 1e-6).
        qkv_bias: bias on the fused qkv projection (official ``qkv_bias=True``).
        attention_dropout: dropout on attention weights (0 in pre-training and fine-tuning configs).
        dropout: dropout after the attention projection and on the FFN output (0 in both configs).
        drop_path_rate: stochastic depth of the last block; block i gets
            ``drop_path_rate * i / (depth - 1)`` (0 in pre-training; fine-tuning asks for 0.1).
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    num_mel_bins: int = 128
    max_time_patches: int = 768
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    attention_dropout: float = 0.0
    dropout: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self):
        assert self.embed_dim % self.num_heads == 0, (
            f"embed_dim {self.embed_dim} must be a multiple of num_heads {self.num_heads}"
        )
        assert self.embed_dim % 4 == 0, f"embed_dim {self.embed_dim} must be a multiple of 4 (2-D sin-cos positions)"
        assert self.num_mel_bins % self.patch_size == 0, (
            f"num_mel_bins {self.num_mel_bins} must be a multiple of patch_size {self.patch_size}"
        )

    @property
    def freq_patches(self) -> int:
        return self.num_mel_bins // self.patch_size


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------
def sincos_positions_2d(num_time: int, num_freq: int, dim: int) -> torch.Tensor:
    """The fixed 2-D sin-cos table of EAT (MAE's ``get_2d_sincos_pos_embed``, made rectangular).

    Row ``t * num_freq + f`` (time-major, like the tokens) holds, with Q = dim / 4 and
    w_i = 1 / 10000^(i / Q):
        channels [0, Q)       sin(f * w_i)     channels [Q, 2Q)   cos(f * w_i)     (frequency index)
        channels [2Q, 3Q)     sin(t * w_i)     channels [3Q, 4Q)  cos(t * w_i)     (time index)
    Computed in float64, then rounded to float32. The official numpy code computes the angles in
    float32, so its tables differ from ours by up to ~6e-5 at the largest time indices (the float32
    rounding of angles up to 767 rad); checkpoint import allows for that.

    Returns:
        (num_time * num_freq, dim) float32.
    """
    assert dim % 4 == 0, f"position dim {dim} must be a multiple of 4"
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (Q,)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (M,) -> (M, 2Q)
        angles = pos[:, None] * omega[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    t = torch.arange(num_time, dtype=torch.float64).repeat_interleave(num_freq)  # (M,) time index
    f = torch.arange(num_freq, dtype=torch.float64).repeat(num_time)  # (M,) frequency index
    return torch.cat([encode(f), encode(t)], dim=1).to(torch.float32)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """Conv2d(1, D, p, stride p, bias) over (B, 1, T, F); tokens come out time-major."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.proj(feats.unsqueeze(1))  # (B, D, T/p, F/p)
        return x.flatten(2).transpose(1, 2)  # (B, T/p * F/p, D), token t * F/p + f


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (keys ``attn.qkv``, ``attn.proj``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attention_dropout: float, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attention_dropout = attention_dropout
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        H = self.num_heads
        qkv = self.qkv(x).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, L, D/H)
        q, k, v = qkv.unbind(0)
        drop = self.attention_dropout if self.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, H, L, D/H)
        x = x.transpose(1, 2).reshape(B, L, D)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (keys ``mlp.fc1``, ``mlp.fc2``, as timm's Mlp)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability p, rescale the rest."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Block(nn.Module):
    """Post-LN Transformer block of data2vec 2.0 / EAT (``layer_norm_first: false``).

    forward returns ``(x, ffn)``: the block output and the FFN output before the residual and
    ``norm2``, which the EMA teacher averages into targets.
    """

    def __init__(self, cfg: EATEncoderConfig, drop_path: float):
        super().__init__()
        D = cfg.embed_dim
        self.norm1 = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.attn = Attention(D, cfg.num_heads, cfg.qkv_bias, cfg.attention_dropout, cfg.dropout)
        self.norm2 = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.mlp = Mlp(D, int(D * cfg.mlp_ratio), cfg.dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm1(x + self.drop_path(self.attn(x)))
        ffn = self.mlp(x)
        x = self.norm2(x + self.drop_path(ffn))
        return x, ffn


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------
class EATEncoder(AbsEncoder):
    """The EAT encoder (student or teacher). See the module docstring for the data flow.

    Parameter names: ``patch_embed.proj.*``, ``cls_token`` (1, 1, D), ``norm.*`` (input LayerNorm),
    ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``. The position table
    ``pos_embed`` (max_time_patches * F/p, D) is a buffer (fixed, never trained) kept in the state
    dict, so that a model imported from an official file keeps that file's own float32 table (the
    official code computes it in float32 numpy, ~6e-5 from ours) and exports it back bit for bit.
    A state dict written before the table was kept gets the formula's table
    (:meth:`upgrade_state_dict`).
    """

    def __init__(self, cfg: EATEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.num_layers = cfg.depth
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        pos = sincos_positions_2d(cfg.max_time_patches, cfg.freq_patches, cfg.embed_dim)
        self.register_buffer("pos_embed", pos)  # (max_time_patches * F/p, D)
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList([Block(cfg, rates[i]) for i in range(cfg.depth)])
        init_eat_encoder_(self)

    def standard_positions(self) -> torch.Tensor:
        """The 2-D sin-cos table of this encoder's size, (max_time_patches * F/p, D) float32."""
        cfg = self.cfg
        return sincos_positions_2d(cfg.max_time_patches, cfg.freq_patches, cfg.embed_dim)

    def upgrade_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict of an encoder saved before ``pos_embed`` was kept gets the formula's table."""
        if "pos_embed" not in state and any(k.startswith("blocks.") for k in state):
            state = {**state, "pos_embed": self.standard_positions()}
        return state

    # --- pieces, used separately by pre-training (student on visible patches, teacher on all) ---
    def grid(self, num_frames: int) -> tuple[int, int]:
        """(time patches, frequency patches) of an input of ``num_frames`` frames."""
        return num_frames // self.cfg.patch_size, self.cfg.freq_patches

    def embed_patches(self, feats: torch.Tensor) -> torch.Tensor:
        """Patch tokens with positions, before masking: (B, T, F) fbank -> (B, N, D)."""
        B, T, F_ = feats.shape
        p = self.cfg.patch_size
        assert F_ == self.cfg.num_mel_bins, f"expected {self.cfg.num_mel_bins} mel bins, got {F_}"
        assert T >= p, f"input has {T} frames, fewer than one patch ({p})"
        time_patches = T // p
        assert time_patches <= self.cfg.max_time_patches, (
            f"input has {time_patches} time patches ({T} frames), more than the position table's "
            f"{self.cfg.max_time_patches}; raise model.max_time_patches"
        )
        x = self.patch_embed(feats[:, : time_patches * p])  # (B, N, D)
        N = x.shape[1]
        return x + self.pos_embed[:N].to(x.dtype)

    def forward_tokens(
        self,
        x: torch.Tensor,
        output_hidden_states: bool = False,
        output_ffn: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Prepend CLS, input LayerNorm, then the blocks.

        Args:
            x: (B, N, D) patch tokens with positions (all of them, or the visible ones).

        Returns:
            (B, 1 + N, D) output with CLS first; per-block outputs and per-block FFN outputs
            (each (B, 1 + N, D), CLS included) when asked for, else empty lists.
        """
        B, N, D = x.shape
        x = torch.cat([self.cls_token.expand(B, -1, -1).to(x.dtype), x], dim=1)  # (B, 1 + N, D)
        x = self.norm(x)
        hidden, ffns = [], []
        for block in self.blocks:
            x, ffn = block(x)
            if output_hidden_states:
                hidden.append(x)
            if output_ffn:
                ffns.append(ffn)
        return x, hidden, ffns

    # --- AbsEncoder -------------------------------------------------------------------------
    def forward(
        self,
        feats: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode every patch of (B, T, F) normalised fbank; see :class:`AbsEncoder`."""
        x = self.embed_patches(feats)
        B, N, D = x.shape
        x, hidden, _ = self.forward_tokens(x, output_hidden_states=output_hidden_states)
        token_padding = None
        if padding_mask is not None and padding_mask.any():
            token_padding = self.token_padding_mask(padding_mask, N)
        return EncoderOutput(
            tokens=x[:, 1:],
            padding_mask=token_padding,
            cls=x[:, 0],
            hidden_states=[h[:, 1:] for h in hidden] if output_hidden_states else None,
        )

    def token_padding_mask(self, padding_mask: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """(B, T) frame padding -> (B, N) token padding: a token is padding when all its frames are."""
        B, T = padding_mask.shape
        p = self.cfg.patch_size
        time_patches = num_tokens // self.cfg.freq_patches
        frames = padding_mask[:, : time_patches * p].reshape(B, time_patches, p).all(dim=-1)  # (B, T/p)
        return frames.repeat_interleave(self.cfg.freq_patches, dim=1)  # (B, N)

    def layer_id(self, param_name: str) -> int:
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        if param_name.startswith(("patch_embed.", "cls_token", "norm.")):
            return 0
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        """Nothing by name: the official recipes weight-decay the CLS token too (a 3-D tensor);
        biases and LayerNorm weights follow the trainer's ``decay_norm_and_bias``."""
        return set()


# --------------------------------------------------------------------------------------------
# Init
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def init_eat_encoder_(encoder: EATEncoder) -> None:
    """Initialise as the official model does (data2vec 2.0 ``Data2VecMultiModel.__init__``).

    * every Linear: N(0, 0.02) weights, zero bias (fairseq ``init_bert_params``);
    * LayerNorms: weight 1, bias 0;
    * patch conv: Xavier-uniform on the weight viewed as (D, p*p) (``ImageEncoder.__init__``,
      "CNN initialize"); its bias keeps PyTorch's default uniform init;
    * CLS token: N(0, 1) (``init_extra_token_zero: false``).
    """
    for module in encoder.modules():
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 0.02)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
    w = encoder.patch_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.normal_(encoder.cls_token, 0.0, 1.0)
    num_params = sum(p.numel() for p in encoder.parameters())
    logger.debug("EAT encoder: %.2fM parameters", num_params / 1e6)
