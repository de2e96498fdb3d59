"""BEATs backbone: patch embedding + DeepNorm Transformer with a gated, bucketed relative position bias.

Chen et al., "BEATs: Audio Pre-Training with Acoustic Tokenizers", ICML 2023 (arXiv:2212.09058);
reference implementation microsoft/unilm ``beats/`` (BEATs.py, backbone.py), itself built on
fairseq's wav2vec 2.0 / WavLM encoder. With the same weights this module gives the official numbers
(module and parameter names follow the official state dict, see :mod:`.checkpoint`).

Data flow, for normalised log-mel features (B, T, 128):

    Conv2d 16x16 stride 16, no bias      (B, 1, T, 128) -> (B, 512, T/16, 8)
    flatten time-major                    -> (B, N, 512), N = 8 * floor(T / 16), token n = (n // 8, n % 8)
    LayerNorm(512), Linear 512 -> 768     -> (B, N, 768)
    padded tokens zeroed, conv positional embedding (weight-normed Conv1d, last frame dropped, GELU)
    added, LayerNorm, then L post-LN DeepNorm layers; no final LayerNorm.

Padding mask (what it means, exactly as the official code computes it). Frames -> tokens is not "a
token is padded when its 16 x 16 patch is": the (B, T) frame mask is cut into N equal consecutive
chunks (after dropping T mod N trailing frames) and a token is padded when *all* frames of its chunk
are. For T >= 32 each chunk is 2 frames, and token (t, f) looks at frames 16 t + 2 f and 16 t + 2 f + 1:
on the last, partly padded time step, the low-frequency tokens stay unpadded and the high-frequency
ones become padded. Padded tokens are zeroed before the positional convolution and never attended to
(-inf as keys); their own outputs are meaningless. For a fixed-size clip embedding of
variable-length audio, average ``tokens`` over ``~padding_mask`` (what ``audiossl.bin.extract`` does).
The same chunking maps a (B, S) sample mask to frames in :func:`preprocess`.

Attention. ``attn_impl="sdpa"`` feeds the gated relative bias (and -inf for padded keys) to
``F.scaled_dot_product_attention`` as an additive float mask; ``"reference"`` computes
softmax(q k^T / sqrt(d) + bias) explicitly in fp32. The official code's "subtract the row max and
rescale by 32" trick only guards fp16 and leaves the softmax unchanged.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.data.fbank import BEATS_NORM, FeatureNorm, compute_fbank, normalize
from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput
from audiossl.models.beats.config import BEATsConfig

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
def chunk_padding_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    """Map a (B, S) padding mask onto a coarser (B, length) axis, as the official code does.

    The trailing ``S mod length`` entries are dropped, the rest is cut into ``length`` equal
    consecutive chunks, and a chunk is padded when all its entries are. Used twice: samples -> fbank
    frames and frames -> patch tokens (see the module docstring for what that means for tokens).
    """
    B, S = mask.shape
    assert S >= length > 0, f"cannot map a padding mask of length {S} onto {length} positions"
    extra = S % length
    if extra > 0:
        mask = mask[:, : S - extra]
    return mask.reshape(B, length, -1).all(dim=-1)  # (B, length, S // length) -> (B, length)


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5-style bucket of ``relative = key index - query index`` (LongTensor, any shape).

    Half the buckets per sign (+num_buckets/2 when relative > 0); within a half, distances below a
    quarter of num_buckets get their own bucket, larger ones share log-spaced buckets up to
    ``max_distance``, and everything beyond falls in the last bucket of the half.
    """
    half = num_buckets // 2
    bucket = (relative > 0).to(torch.long) * half
    distance = relative.abs()
    max_exact = half // 2
    is_small = distance < max_exact
    # log-spaced part; clamp to 1 so that log never sees 0 (those entries take the exact branch)
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (half - max_exact)).to(torch.long)
    large = large.clamp(max=half - 1)
    return bucket + torch.where(is_small, distance, large)


class WeightNormConv1d(nn.Module):
    """Conv1d with weight normalisation over dim 2, stored the way official BEATs checkpoints are.

    weight = weight_v * weight_g / ||weight_v||, the norm taken over dims 0 and 1 (one norm per
    kernel tap). Parameters are ``weight_g`` (1, 1, K), ``weight_v`` (out, in / groups, K) and
    ``bias``, the names of the old ``torch.nn.utils.weight_norm``; files saved from the newer
    ``torch.nn.utils.parametrizations.weight_norm`` name them ``parametrizations.weight.original0/1``,
    which :meth:`upgrade_state_dict` maps back (``audiossl.models.checkpoint.load_strict`` calls it).
    """

    PARAMETRIZED_NAMES = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.groups = groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel_size))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))

    @property
    def weight(self) -> torch.Tensor:
        norm = torch.linalg.vector_norm(self.weight_v, dim=(0, 1), keepdim=True)  # (1, 1, K)
        return self.weight_v * (self.weight_g / norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, padding=self.padding, groups=self.groups)

    @classmethod
    def upgrade_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This module's keys with the ``parametrizations`` names mapped to ``weight_g``/``weight_v``."""
        legacy = {new: old for old, new in cls.PARAMETRIZED_NAMES.items()}
        return {legacy.get(k, k): v for k, v in state.items()}


class DropLast(nn.Module):
    """Drop the last output frame of an even-kernel 'same' convolution (official ``SamePad``)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : x.shape[2] - self.remove] if self.remove else x


class _GradScale(torch.autograd.Function):
    """Identity forward; gradient multiplied by ``scale`` backward (layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, its gradient multiplied by ``scale``."""
    return _GradScale.apply(x, scale)


def _activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "gelu":
        return F.gelu(x.float()).to(x.dtype)  # in fp32 under autocast, as the official code does
    return F.relu(x)


class RelPosSelfAttention(nn.Module):
    """Multi-head self-attention with a gated relative position bias (WavLM / BEATs).

    Given the shared raw bias B (H, L, L) of the relative-position embedding, each query i of head h
    gets the bias ``scale_hi * B_hij``, with ``scale = g_a * (g_b * grep_a - 1) + 2`` and
    (g_a, g_b) = sigmoid of a tiny linear read-out (``grep_linear``, head_dim -> 8, summed in two
    groups of 4) of the raw query projection.
    """

    def __init__(self, cfg: BEATsConfig, has_relative_attention_bias: bool) -> None:
        super().__init__()
        D, H = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.num_heads = H
        self.head_dim = D // H
        self.dropout = cfg.attention_dropout
        self.attn_impl = cfg.attn_impl
        self.gru_rel_pos = cfg.gru_rel_pos
        self.q_proj = nn.Linear(D, D)
        self.k_proj = nn.Linear(D, D)
        self.v_proj = nn.Linear(D, D)
        self.out_proj = nn.Linear(D, D)
        if has_relative_attention_bias:
            # layer 0 owns the embedding; the encoder makes every other layer point at the same module
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, H)
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, H, 1, 1))

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, L, D); key_padding_mask (B, L) True on padded keys; position_bias (1 or B, H, L, L)."""
        B, L, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        q = self.q_proj(x).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
        k = self.k_proj(x).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
        v = self.v_proj(x).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)

        bias = None
        if position_bias is not None:
            bias = position_bias
            if self.gru_rel_pos:
                gates = self.grep_linear(q).view(B, H, L, 2, 4).sum(-1)  # (B, H, L, 8) -> (B, H, L, 2)
                gate_a, gate_b = torch.sigmoid(gates).chunk(2, dim=-1)  # (B, H, L, 1) each
                scale = gate_a * (gate_b * self.grep_a - 1.0) + 2.0  # (B, H, L, 1)
                bias = scale * position_bias  # (B, H, L, L)

        dropout_p = self.dropout if self.training else 0.0
        if self.attn_impl == "sdpa":
            out = self._sdpa(q, k, v, bias, key_padding_mask, dropout_p)
        else:
            out = self._reference(q, k, v, bias, key_padding_mask, dropout_p)
        out = out.transpose(1, 2).reshape(B, L, D)  # (B, H, L, Dh) -> (B, L, D)
        return self.out_proj(out)

    @staticmethod
    def _sdpa(q, k, v, bias, key_padding_mask, dropout_p):
        mask = None
        if bias is not None:
            mask = bias.to(q.dtype)  # SDPA wants the float mask in the query's dtype (bf16 under autocast)
            if key_padding_mask is not None:
                mask = mask.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))  # (B, H, L, L)
        elif key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, L), True = may attend
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)

    @staticmethod
    def _reference(q, k, v, bias, key_padding_mask, dropout_p):
        Dh = q.shape[-1]
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(Dh)  # (B, H, L, L)
        if bias is not None:
            scores = scores + bias.float()
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout_p)
        return torch.matmul(probs.to(v.dtype), v)  # (B, H, L, Dh)


class EncoderLayer(nn.Module):
    """One Transformer layer: post-LN with DeepNorm residual scaling (or pre-LN if layer_norm_first).

    post-LN: x = LN(alpha * x + Attn(x)); x = LN(alpha * x + FFN(x)), alpha = (2 L)^(1/4) with DeepNorm,
    1 without (Wang et al., "DeepNet", arXiv:2203.00555).
    """

    def __init__(self, cfg: BEATsConfig, has_relative_attention_bias: bool) -> None:
        super().__init__()
        D = cfg.encoder_embed_dim
        self.layer_norm_first = cfg.layer_norm_first
        self.activation_fn = cfg.activation_fn
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0
        self.self_attn = RelPosSelfAttention(cfg, has_relative_attention_bias)
        self.self_attn_layer_norm = nn.LayerNorm(D)
        self.fc1 = nn.Linear(D, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, D)
        self.final_layer_norm = nn.LayerNorm(D)
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.fc2(self.dropout2(_activation(self.activation_fn, self.fc1(x)))))

    def forward(self, x, key_padding_mask=None, position_bias=None) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), key_padding_mask, position_bias))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x * self.alpha + self.dropout1(self.self_attn(x, key_padding_mask, position_bias)))
        return self.final_layer_norm(x * self.alpha + self._ffn(x))


class TransformerEncoder(nn.Module):
    """Conv positional embedding + layers, the official ``encoder.*`` sub-module (also the tokenizer
    estimator and the SSL label predictor, with their own depths)."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        D = cfg.encoder_embed_dim
        self.cfg = cfg
        self.dropout = cfg.dropout
        self.layerdrop = cfg.encoder_layerdrop
        self.layer_norm_first = cfg.layer_norm_first
        self.grad_decay = cfg.layer_wise_gradient_decay_ratio
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(D, cfg.conv_pos, cfg.conv_pos_groups), DropLast(cfg.conv_pos), nn.GELU()
        )
        self.layers = nn.ModuleList(
            [EncoderLayer(cfg, cfg.relative_position_embedding) for _ in range(cfg.encoder_layers)]
        )
        if cfg.relative_position_embedding:
            # one embedding for all layers: its key appears under every layer, as in official files
            shared = self.layers[0].self_attn.relative_attention_bias
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = shared
        self.layer_norm = nn.LayerNorm(D)

    def relative_bias(self, length: int, positions: torch.Tensor | None, device) -> torch.Tensor | None:
        """Raw (ungated) bias (1, H, L, L) for tokens 0..L-1, or (B, H, L, L) for ``positions`` (B, L),
        the original token indices of a subset (SSL: the visible tokens)."""
        if not self.cfg.relative_position_embedding:
            return None
        if positions is None:
            idx = torch.arange(length, device=device)
            relative = idx[None, :] - idx[:, None]  # (L, L): key - query
            relative = relative[None]  # (1, L, L)
        else:
            relative = positions[:, None, :] - positions[:, :, None]  # (B, L, L): key - query
        buckets = relative_position_bucket(relative, self.cfg.num_buckets, self.cfg.max_distance)
        values = self.layers[0].self_attn.relative_attention_bias(buckets)  # (B|1, L, L, H)
        return values.permute(0, 3, 1, 2)  # (B|1, H, L, L)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, L, D), padding_mask (B, L) True on padded tokens, positions (B, L) original token
        indices (None: 0..L-1). Returns the last layer's output and, if asked, every layer's."""
        B, L, D = x.shape
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[:, :, None], 0.0)
        x_conv = self.pos_conv(x.transpose(1, 2)).transpose(1, 2)  # (B, D, L) -> (B, L, D)
        x = x + x_conv
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)

        bias = self.relative_bias(L, positions, x.device)
        hidden: list[torch.Tensor] = []
        for layer in self.layers:
            if self.training and self.grad_decay != 1.0:
                x = grad_scale(x, self.grad_decay)
            skip = self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop
            if not skip:
                x = layer(x, padding_mask, bias)
            if output_hidden_states:
                hidden.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, hidden

    @torch.no_grad()
    def init_weights(self) -> None:
        """fairseq's BERT init, then the DeepNorm special case (official TransformerEncoder)."""
        cfg = self.cfg
        # BERT init (fairseq init_bert_params): every Linear N(0, 0.02) with zero bias, Embedding N(0, 0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            elif isinstance(m, nn.LayerNorm):
                m.reset_parameters()
        for layer in self.layers:
            if cfg.gru_rel_pos:
                nn.init.ones_(layer.self_attn.grep_a)
        # positional conv (wav2vec 2.0): N(0, sqrt(4 / (K * D))), zero bias, g = ||v|| so weight == v
        conv = self.pos_conv[0]
        nn.init.normal_(conv.weight_v, std=math.sqrt(4.0 / (cfg.conv_pos * cfg.encoder_embed_dim)))
        nn.init.zeros_(conv.bias)
        conv.weight_g.copy_(torch.linalg.vector_norm(conv.weight_v, dim=(0, 1), keepdim=True))
        # DeepNorm (arXiv:2203.00555): xavier-normal, gain beta = (8 L)^(-1/4) on v, out, fc1, fc2
        if cfg.deep_norm:
            beta = math.pow(8 * cfg.encoder_layers, -0.25)
            for layer in self.layers:
                nn.init.xavier_normal_(layer.self_attn.q_proj.weight, gain=1.0)
                nn.init.xavier_normal_(layer.self_attn.k_proj.weight, gain=1.0)
                nn.init.xavier_normal_(layer.self_attn.v_proj.weight, gain=beta)
                nn.init.xavier_normal_(layer.self_attn.out_proj.weight, gain=beta)
                nn.init.xavier_normal_(layer.fc1.weight, gain=beta)
                nn.init.xavier_normal_(layer.fc2.weight, gain=beta)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
def preprocess(
    waveforms: torch.Tensor,
    sample_padding_mask: torch.Tensor | None = None,
    norm: FeatureNorm = BEATS_NORM,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Waveforms (B, S) at 16 kHz in [-1, 1] -> normalised BEATs fbank (B, T, 128) and frame mask.

    The official front end: fbank of each (zero-padded) waveform x 2^15, then (x - mean) / (2 std).
    A (B, S) sample mask (True on padding) becomes a (B, T) frame mask by :func:`chunk_padding_mask`.
    """
    feats = torch.stack([normalize(compute_fbank(w, kind="beats"), norm) for w in waveforms])  # (B, T, 128)
    frame_mask = None
    if sample_padding_mask is not None:
        frame_mask = chunk_padding_mask(sample_padding_mask, feats.shape[1])
    return feats, frame_mask


class BEATsBackbone(AbsEncoder):
    """The BEATs encoder (official class ``BEATs`` without the fine-tuned predictor).

    Args:
        cfg: :class:`BEATsConfig`.
    """

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.encoder_embed_dim
        self.num_layers = cfg.encoder_layers
        P = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=P, stride=P, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim) if cfg.embed_dim != cfg.encoder_embed_dim else nn.Identity()
        )
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = TransformerEncoder(cfg)
        self.init_weights()

    def num_tokens(self, num_frames: int, num_bins: int = 128) -> int:
        """N for T frames: (T // P) * (F // P)."""
        P = self.cfg.input_patch_size
        return (num_frames // P) * (num_bins // P)

    def patch_embed(
        self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, F) normalised fbank -> token embeddings (B, N, D) and token mask (B, N)."""
        B, T, F_ = feats.shape
        x = self.patch_embedding(feats.unsqueeze(1))  # (B, 1, T, F) -> (B, C, T/P, F/P)
        x = x.reshape(B, x.shape[1], -1).transpose(1, 2)  # (B, C, N) -> (B, N, C), time-major
        x = self.layer_norm(x)
        token_mask = None
        if padding_mask is not None:
            assert padding_mask.shape == (B, T), f"padding_mask {tuple(padding_mask.shape)} != feats (B, T) {(B, T)}"
            token_mask = chunk_padding_mask(padding_mask, x.shape[1])
        x = self.post_extract_proj(x)  # (B, N, D)
        return self.dropout_input(x), token_mask

    def encode_tokens(
        self,
        x: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the Transformer on (B, L, D) token embeddings (a subset if ``positions`` is given).

        In training, the gradient entering layer i from above is scaled by
        ``layer_wise_gradient_decay_ratio`` once per layer, so layer i's parameters see r^(L-1-i) and
        everything below the layers r^L (official ``GradMultiply`` before every layer)."""
        return self.encoder(x, token_mask, positions, output_hidden_states)

    def forward(
        self,
        feats: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        x, token_mask = self.patch_embed(feats, padding_mask)
        x, hidden = self.encode_tokens(x, token_mask, None, output_hidden_states)
        if token_mask is not None and not token_mask.any():
            token_mask = None
        return EncoderOutput(tokens=x, padding_mask=token_mask, cls=None, hidden_states=hidden or None)

    def layer_id(self, param_name: str) -> int:
        """0 below the layers (patch embedding, projections, positional conv), i + 1 for layer i; the
        final LayerNorm of a pre-LN model sits above the last layer."""
        prefix = "encoder.layers."
        if param_name.startswith(prefix):
            return int(param_name[len(prefix):].split(".", 1)[0]) + 1
        if self.cfg.layer_norm_first and param_name.startswith("encoder.layer_norm."):
            return self.num_layers + 1
        return 0

    def no_weight_decay(self) -> set[str]:
        """The per-head gate scales ``grep_a`` (scalars, not weights)."""
        return {n for n, _ in self.named_parameters() if n.endswith("grep_a")}

    @torch.no_grad()
    def init_weights(self) -> None:
        """Front end keeps torch's default init, as the official model does; encoder: see
        :meth:`TransformerEncoder.init_weights`."""
        self.patch_embedding.reset_parameters()
        self.layer_norm.reset_parameters()
        if isinstance(self.post_extract_proj, nn.Linear):
            self.post_extract_proj.reset_parameters()
        self.encoder.init_weights()
        n = sum(p.numel() for p in self.parameters())
        logger.debug("BEATs backbone: %.2fM parameters", n / 1e6)
