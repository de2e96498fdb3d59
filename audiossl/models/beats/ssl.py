"""BEATs self-supervised pre-training: masked acoustic-token prediction (arXiv:2212.09058, section 3.1).

For each clip (normalised fbank (B, T, 128)):

1. the frozen tokenizer labels every patch token from the *unmasked* input, without gradients
   (B, N) in [0, K);
2. 75 % of the tokens are masked uniformly at random, per clip (padded tokens are masked first, so
   the kept ones are real audio whenever the clip has enough of it);
3. the visible tokens, in their original order, go through the BEATs encoder; by default the
   relative position bias is computed from their ORIGINAL token indices, so attention sees true
   distances, while the convolutional positional embedding runs over the shortened sequence. The
   official pre-training code is not public and the paper does not say; ESPnet's OpenBEATs instead
   runs the encoder on the shortened sequence as if it were contiguous, positions 0..K-1
   (espnet2/asr/encoder/beats_encoder.py, ``extract_features`` after ``mask_sequence``):
   ``visible_positions: compressed`` does that;
4. a label predictor (a small BEATs Transformer, 3 layers by default) gets the encoder outputs at
   the visible positions and a learned mask token at the masked ones, on the full token grid;
5. cross-entropy over K labels on the masked, non-padded tokens (optional label smoothing).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.models.beats.backbone import BEATsBackbone, TransformerEncoder
from audiossl.models.beats.config import BEATsConfig
from audiossl.models.beats.tokenizer import ModuleRef, freeze
from audiossl.models.abs_train_model import AbsTrainModel

logger = logging.getLogger(__name__)

EVAL_MASK_SEED = 0  # masks drawn in eval mode come from this seed (per batch)
IGNORE_LABEL = -100  # target of masked tokens that are padding (cross_entropy ignore_index)


@dataclass
class SSLConfig:
    """``model:`` section of the ``beats_ssl`` task.

    Attributes:
        encoder: the BEATs backbone (:class:`~.config.BEATsConfig`, official key names; missing keys
            take the released-checkpoint values).
        tokenizer: model.pt of the tokenizer round that gives the labels (``beats_tokenizer`` task);
            needed to train, not to fine-tune or extract.
        mask_ratio: fraction of tokens masked per clip (0.75).
        predictor_layers: depth of the label predictor (not published; OpenBEATs uses 3).
        predictor_dim, predictor_heads, predictor_ffn_dim: its width; None = the encoder's.
        label_smoothing: of the cross-entropy (OpenBEATs: 0.1).
        visible_positions: the positions the encoder's relative position bias sees for the visible
            tokens: "original" (their indices in the full token grid) or "compressed" (0..K-1 in the
            shortened sequence, as OpenBEATs); see the module docstring.
    """

    encoder: BEATsConfig = field(default_factory=BEATsConfig)
    tokenizer: str | None = None
    mask_ratio: float = 0.75
    predictor_layers: int = 3
    predictor_dim: int | None = None
    predictor_heads: int | None = None
    predictor_ffn_dim: int | None = None
    label_smoothing: float = 0.1
    visible_positions: Literal["original", "compressed"] = "original"

    def __post_init__(self) -> None:
        assert 0.0 < self.mask_ratio < 1.0, f"model.mask_ratio must be in (0, 1), got {self.mask_ratio}"
        if isinstance(self.encoder, dict):  # built by hand from a plain dict
            self.encoder = BEATsConfig.from_dict(self.encoder, where="model.encoder")

    def encoder_config(self) -> BEATsConfig:
        return self.encoder

    def predictor_config(self) -> BEATsConfig:
        enc = self.encoder_config()
        return dataclasses.replace(
            enc,
            encoder_layers=self.predictor_layers,
            encoder_embed_dim=self.predictor_dim or enc.encoder_embed_dim,
            encoder_attention_heads=self.predictor_heads or enc.encoder_attention_heads,
            encoder_ffn_embed_dim=self.predictor_ffn_dim or enc.encoder_ffn_embed_dim,
            encoder_layerdrop=0.0,
            layer_wise_gradient_decay_ratio=1.0,
        )


def random_token_mask(
    batch_size: int, num_tokens: int, mask_ratio: float, token_mask: torch.Tensor | None, device,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random masking with the same number of visible tokens in every clip.

    Returns keep_idx (B, K) original indices of the visible tokens, increasing along each row, with
    K = N - int(N * mask_ratio), and masked (B, N) bool. Padded tokens (token_mask True) are masked
    before any real one.
    """
    B, N = batch_size, num_tokens
    num_keep = N - int(N * mask_ratio)
    assert num_keep > 0, f"mask_ratio {mask_ratio} leaves no visible token out of {N}"
    noise = torch.rand(B, N, device=device, generator=generator)
    if token_mask is not None:
        noise = noise + token_mask.to(noise.dtype)  # padded tokens sort last
    keep_idx = noise.argsort(dim=1)[:, :num_keep].sort(dim=1).values  # (B, K)
    masked = torch.ones(B, N, dtype=torch.bool, device=device)
    masked.scatter_(1, keep_idx, False)
    return keep_idx, masked


class LabelPredictor(nn.Module):
    """Encoder outputs at visible positions + a learned mask token elsewhere -> label logits."""

    def __init__(self, cfg: BEATsConfig, input_dim: int, num_labels: int) -> None:
        super().__init__()
        D = cfg.encoder_embed_dim
        self.input_proj = nn.Linear(input_dim, D) if input_dim != D else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(D))
        self.encoder = TransformerEncoder(cfg)
        self.head = nn.Linear(D, num_labels)
        self.init_weights()

    def forward(
        self, visible: torch.Tensor, keep_idx: torch.Tensor, num_tokens: int, token_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """visible (B, K, D_enc) at keep_idx (B, K) -> hidden states (B, N, D) on the full grid."""
        B, K, _ = visible.shape
        v = self.input_proj(visible)  # (B, K, D)
        D = v.shape[-1]
        full = self.mask_token.to(v.dtype).expand(B, num_tokens, D)  # (B, N, D)
        full = full.scatter(1, keep_idx[:, :, None].expand(B, K, D), v)  # visible tokens back in place
        h, _ = self.encoder(full, token_mask)
        return h

    @torch.no_grad()
    def init_weights(self) -> None:
        self.encoder.init_weights()
        # mask token N(0, 0.02) (BEiT's choice); head: BERT init like the rest
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        if isinstance(self.input_proj, nn.Linear):
            nn.init.normal_(self.input_proj.weight, std=0.02)
            nn.init.zeros_(self.input_proj.bias)


class BEATsSSLModel(AbsTrainModel):
    """Training model of BEATs masked label prediction.

    State dict: ``encoder.*`` (the BEATs backbone, official key names below the prefix) and
    ``predictor.*``. The frozen tokenizer is not part of it (reloaded from its model.pt).
    """

    def __init__(self, cfg: SSLConfig, tokenizer: nn.Module) -> None:
        super().__init__()
        self.mask_ratio = cfg.mask_ratio
        self.label_smoothing = cfg.label_smoothing
        self.original_positions = cfg.visible_positions == "original"
        self.encoder = BEATsBackbone(cfg.encoder_config())
        self.num_labels = int(tokenizer.codebook_size)
        self.predictor = LabelPredictor(cfg.predictor_config(), self.encoder.embed_dim, self.num_labels)
        self._tokenizer = ModuleRef(freeze(tokenizer))
        # layer drop leaves some layers out of a step: DDP must then look for unused parameters
        self.find_unused_parameters = cfg.encoder_config().encoder_layerdrop > 0

    @property
    def tokenizer(self) -> nn.Module:
        return self._tokenizer.module

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._tokenizer.module._apply(fn, recurse)  # follow .to(device) like a registered module
        return self

    def forward(self, batch: dict[str, Any]):
        feats, padding_mask = batch["feats"], batch.get("padding_mask")
        labels = self.tokenizer.tokenize(feats, padding_mask)  # (B, N), no grad
        x, token_mask = self.encoder.patch_embed(feats, padding_mask)  # (B, N, D), (B, N)
        B, N, D = x.shape
        assert labels.shape == (B, N), (
            f"tokenizer gives labels {tuple(labels.shape)} but the encoder has {(B, N)} tokens: "
            "their patch grids must match (tokenizer patch_size == encoder input_patch_size)"
        )
        generator = None
        if not self.training:  # validation: the same masks every time, so validations compare
            generator = torch.Generator(device=x.device).manual_seed(EVAL_MASK_SEED)
        keep_idx, masked = random_token_mask(B, N, self.mask_ratio, token_mask, x.device, generator)
        K = keep_idx.shape[1]
        visible = x.gather(1, keep_idx[:, :, None].expand(B, K, D))  # (B, K, D)
        visible_mask = None if token_mask is None else token_mask.gather(1, keep_idx)  # (B, K)
        positions = keep_idx if self.original_positions else None  # None: 0..K-1
        h, _ = self.encoder.encode_tokens(visible, visible_mask, positions=positions)  # (B, K, D)
        h = self.predictor(h, keep_idx, N, token_mask)  # (B, N, D_pred)

        # The loss reads the M = N - K masked tokens of every clip by index, a count known on the host
        # (a boolean mask would make the host wait for the device to count); padded ones are ignored.
        M = N - K
        mask_idx = torch.sort((~masked).to(torch.uint8), dim=1, stable=True).indices[:, :M]  # (B, M), ascending
        targets = labels.gather(1, mask_idx)  # (B, M)
        if token_mask is not None:
            targets = targets.masked_fill(token_mask.gather(1, mask_idx), IGNORE_LABEL)
        valid = targets != IGNORE_LABEL  # (B, M)
        # checked without waiting: a RuntimeError on CPU, a device-side assert on CUDA
        torch._assert_async(valid.any(), "no masked, non-padded token in this batch")
        h = h.gather(1, mask_idx[:, :, None].expand(B, M, h.shape[-1]))  # (B, M, D_pred)
        logits = self.predictor.head(h)  # (B, M, K_labels), only where the loss needs them
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_LABEL,
            label_smoothing=self.label_smoothing,
        )  # mean over the valid tokens
        with torch.no_grad():
            hits = (logits.argmax(dim=-1) == targets) & valid
            acc = hits.sum() / valid.sum().clamp(min=1)
        return loss, {"loss": loss.detach(), "acc": acc.float()}, B

    def no_weight_decay(self) -> set[str]:
        names = {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        names |= {n for n, _ in self.predictor.named_parameters(prefix="predictor") if n.endswith(("grep_a", "mask_token"))}
        return names
