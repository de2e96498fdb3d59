"""BEATs acoustic tokenizers: patches of normalised fbank -> discrete labels (B, N), one per patch token.

Two kinds, both with ``tokenize(feats, padding_mask) -> LongTensor (B, N)`` and ``codebook_size``:

* :class:`RandomProjectionTokenizer` (round 1). BEATs' first iteration uses a frozen random-projection
  tokenizer (arXiv:2212.09058, section 3.2); we do it BEST-RQ style (Chiu et al., arXiv:2202.01855)
  on the model's input itself. Exactly what is projected: the normalised log-mel fbank cut into the
  backbone's P x P patches (same grid and time-major token order as the backbone, trailing T mod P
  frames dropped), each patch flattened (time, frequency) row-major into P*P = 256 values, with no
  further normalisation. Projection: a frozen (P*P, d) matrix, xavier-normal; codebook: K frozen
  random unit vectors (d = 256, K = 1024); label = nearest code by cosine to the L2-normalised
  projection. Both tensors come from a seeded generator, so every rank builds the same tokenizer.
* :class:`DistilledTokenizer` (rounds >= 2): a BEATs backbone -> ``quantize_layer`` (Linear D->D, Tanh,
  Linear D->d) -> :class:`~.quantizer.NormEMAQuantizer`. It is trained by distillation from the
  previous round's SSL encoder: a small Transformer *estimator* reads the quantised vectors and
  regresses the teacher's last layer (:class:`TokenizerDistillModel`), with loss
  ``1 - cosine + commitment`` (straight-through gradients into the tokenizer).

Token padding follows the backbone (:func:`~.backbone.chunk_padding_mask`); the labels of padded
tokens are meaningless and never used.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput
from audiossl.models.beats.backbone import BEATsBackbone, TransformerEncoder, chunk_padding_mask
from audiossl.models.beats.config import BEATsConfig
from audiossl.models.beats.quantizer import NormEMAQuantizer, l2norm
from audiossl.models.abs_train_model import AbsTrainModel

logger = logging.getLogger(__name__)

TOKENIZER_KINDS = ("random", "distilled")


@dataclass
class TokenizerConfig:
    """``model:`` section of the ``beats_tokenizer`` task.

    Attributes:
        kind: "random" (round 1, nothing to train: run it with ``optim.max_updates 0``) or
            "distilled" (rounds >= 2, needs ``teacher``).
        codebook_size: K, number of labels (1024 in BEATs).
        codebook_dim: d, code dimension (256 in BEATs).
        patch_size: patch side P of the random kind (must match the SSL encoder's input_patch_size).
        seed: seed of the random kind's projection and codebook.
        encoder: the distilled tokenizer's BEATs backbone (:class:`~.config.BEATsConfig`, official
            key names; missing keys take the released-checkpoint values).
        estimator_layers: depth of the estimator Transformer (3 in BEATs); it has the encoder's width.
        teacher: model.pt of the teacher (the previous round's SSL model, or anything whose task has
            an encoder); only needed to train.
        beta: weight of the commitment loss (1.0).
        decay: codebook EMA decay (0.99).
        kmeans_iters: k-means iterations of the codebook initialisation on the first batch (10).
        dead_code_threshold: restart codes used fewer times per batch (EMA) than this; 0: never.
    """

    kind: str = "distilled"
    codebook_size: int = 1024
    codebook_dim: int = 256
    patch_size: int = 16
    seed: int = 0
    encoder: BEATsConfig = field(default_factory=BEATsConfig)
    estimator_layers: int = 3
    teacher: str | None = None
    beta: float = 1.0
    decay: float = 0.99
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.0

    def __post_init__(self) -> None:
        assert self.kind in TOKENIZER_KINDS, f"model.kind must be one of {TOKENIZER_KINDS}, got {self.kind!r}"
        if isinstance(self.encoder, dict):  # built by hand from a plain dict
            self.encoder = BEATsConfig.from_dict(self.encoder, where="model.encoder")

    def encoder_config(self) -> BEATsConfig:
        return self.encoder


# --------------------------------------------------------------------------------------------
# Round 1: random projection
# --------------------------------------------------------------------------------------------
class RandomProjectionTokenizer(nn.Module):
    """Frozen random projection of fbank patches + frozen random codebook, nearest code by cosine."""

    def __init__(self, patch_size: int = 16, codebook_size: int = 1024, codebook_dim: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.codebook_size = codebook_size
        g = torch.Generator().manual_seed(seed)
        in_dim = patch_size * patch_size
        std = math.sqrt(2.0 / (in_dim + codebook_dim))  # xavier-normal, as BEST-RQ
        self.register_buffer("projection", torch.randn(in_dim, codebook_dim, generator=g) * std)
        self.register_buffer("codebook", l2norm(torch.randn(codebook_size, codebook_dim, generator=g)))

    def patches(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, N, P*P): the backbone's patch grid, time-major, each patch (time, freq) row-major."""
        B, T, F_ = feats.shape
        P = self.patch_size
        t, f = T // P, F_ // P
        x = feats[:, : t * P, : f * P].reshape(B, t, P, f, P)  # (B, t, P_time, f, P_freq)
        return x.permute(0, 1, 3, 2, 4).reshape(B, t * f, P * P)  # (B, t, f, P, P) -> (B, N, P*P)

    def token_mask(self, feats: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        if padding_mask is None:
            return None
        P = self.patch_size
        return chunk_padding_mask(padding_mask, (feats.shape[1] // P) * (feats.shape[2] // P))

    @torch.no_grad()
    def tokenize(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) normalised fbank -> labels (B, N)."""
        with torch.autocast(device_type=feats.device.type, enabled=False):
            z = l2norm(self.patches(feats.float()) @ self.projection)  # (B, N, d)
            return (z @ self.codebook.t()).argmax(dim=-1)  # (B, N)


# --------------------------------------------------------------------------------------------
# Rounds >= 2: self-distilled tokenizer
# --------------------------------------------------------------------------------------------
class DistilledTokenizer(nn.Module):
    """BEATs backbone -> quantize_layer -> EMA cosine quantiser (official ``Tokenizers`` layout:
    backbone keys under ``encoder.``, then ``quantize_layer.*`` and ``quantize.*``)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        enc_cfg = cfg.encoder_config()
        D = enc_cfg.encoder_embed_dim
        self.codebook_size = cfg.codebook_size
        self.encoder = BEATsBackbone(enc_cfg)
        self.quantize_layer = nn.Sequential(nn.Linear(D, D), nn.Tanh(), nn.Linear(D, cfg.codebook_dim))
        self.quantize = NormEMAQuantizer(
            cfg.codebook_size, cfg.codebook_dim, beta=cfg.beta, decay=cfg.decay,
            kmeans_init=True, kmeans_iters=cfg.kmeans_iters, dead_code_threshold=cfg.dead_code_threshold,
        )
        # quantize_layer: torch's default Linear init, as in the official Tokenizers class

    def project(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """(B, T, F) -> vectors to quantise (B, N, d) and the token mask (B, N) or None."""
        x, token_mask = self.encoder.patch_embed(feats, padding_mask)
        x, _ = self.encoder.encode_tokens(x, token_mask)
        return self.quantize_layer(x), token_mask

    @torch.no_grad()
    def tokenize(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) normalised fbank -> labels (B, N); pure (no codebook update)."""
        z, _ = self.project(feats, padding_mask)
        return self.quantize.codes(z)


class Estimator(nn.Module):
    """Quantised vectors (B, N, d) -> predictions of the teacher's last layer (B, N, D_teacher):
    Linear d -> D, a BEATs Transformer stack, Linear D -> D_teacher."""

    def __init__(self, enc_cfg: BEATsConfig, num_layers: int, code_dim: int, target_dim: int) -> None:
        super().__init__()
        cfg = dataclasses.replace(
            enc_cfg, encoder_layers=num_layers, encoder_layerdrop=0.0, layer_wise_gradient_decay_ratio=1.0
        )
        D = cfg.encoder_embed_dim
        self.input_proj = nn.Linear(code_dim, D)
        self.encoder = TransformerEncoder(cfg)
        self.output_proj = nn.Linear(D, target_dim)
        self.encoder.init_weights()

    def forward(self, z_q: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        x, _ = self.encoder(self.input_proj(z_q), token_mask)
        return self.output_proj(x)


class ModuleRef:
    """Holds a module without registering it: it stays out of the owner's state dict, parameters and
    train()/eval() switches (owners forward ``_apply`` to it so that ``.to(device)`` still reaches it)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients, for teachers and tokenizers."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class PatchLogitsTeacher(nn.Module):
    """A fine-tuned classifier as the tokenizer's teacher (BEATs "iter3+"): the targets are its
    per-patch logits, the classifier head applied to every token before pooling (B, N, C).

    For a BEATs classifier (mean pooling, no norm before the head) these are exactly the official
    fine-tuned model's per-patch predictor outputs. ``embed_dim`` is the number of classes, so the
    estimator regresses C-dimensional logits.
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        assert classifier.pooling == "mean", (
            "an iter3+ teacher needs per-patch logits: a classifier with mean pooling (BEATs), "
            f"not {classifier.pooling!r} pooling"
        )
        self.classifier = classifier
        self.embed_dim = classifier.head.out_features

    def forward(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None) -> EncoderOutput:
        out = self.classifier.encoder(feats, padding_mask)
        logits = self.classifier.head(self.classifier.head_norm(out.tokens))  # (B, N, C)
        return EncoderOutput(tokens=logits, padding_mask=out.padding_mask)


class TokenizerDistillModel(AbsTrainModel):
    """Training model of a self-distilled tokenizer.

    State dict: ``encoder.*`` (the tokenizer's backbone, an AbsEncoder), ``quantize_layer.*``,
    ``quantize.*`` (official Tokenizers layout) and ``estimator.*``. The frozen teacher is not part of
    it (it is reloaded from its model.pt).

    Loss = mean over non-padded tokens of (1 - cos(estimate, teacher target)) + beta * commitment,
    the target being the teacher's last layer, or its per-patch logits for a fine-tuned teacher
    (:class:`PatchLogitsTeacher`).
    """

    def __init__(self, cfg: TokenizerConfig, teacher: nn.Module) -> None:
        super().__init__()
        tok = DistilledTokenizer(cfg)
        self.encoder = tok.encoder
        self.quantize_layer = tok.quantize_layer
        self.quantize = tok.quantize
        self._tokenizer = ModuleRef(tok)  # a view on the three modules above
        self._teacher = ModuleRef(freeze(teacher))
        self.estimator = Estimator(tok.encoder.cfg, cfg.estimator_layers, cfg.codebook_dim, teacher.embed_dim)
        # layer drop leaves some layers out of a step: DDP must then look for unused parameters
        self.find_unused_parameters = tok.encoder.cfg.encoder_layerdrop > 0

    @property
    def tokenizer(self) -> DistilledTokenizer:
        return self._tokenizer.module

    @property
    def teacher(self) -> AbsEncoder:
        return self._teacher.module

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._teacher.module._apply(fn, recurse)  # follow .to(device) like a registered module
        return self

    def forward(self, batch: dict[str, Any]):
        feats, padding_mask = batch["feats"], batch.get("padding_mask")
        with torch.no_grad():
            target = self.teacher(feats, padding_mask).tokens  # (B, N, D_teacher)
        z, token_mask = self.tokenizer.project(feats, padding_mask)  # (B, N, d)
        assert target.shape[:2] == z.shape[:2], (
            f"teacher gives {tuple(target.shape[:2])} tokens, tokenizer {tuple(z.shape[:2])}: "
            "their patch grids must match (same input_patch_size)"
        )
        q = self.quantize(z, token_mask)
        estimate = self.estimator(q.z_q.to(z.dtype), token_mask)  # (B, N, D_teacher)
        valid = torch.ones_like(q.codes, dtype=torch.bool) if token_mask is None else ~token_mask
        cos = F.cosine_similarity(estimate.float(), target.float(), dim=-1)  # (B, N)
        cos_loss = ((1.0 - cos) * valid).sum() / valid.sum().clamp(min=1)
        loss = cos_loss + q.commit_loss
        with torch.no_grad():
            used = torch.bincount(q.codes[valid], minlength=self.quantize.num_codes)
            p = used.float() / used.sum().clamp(min=1)
            perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())
        stats = {
            "loss": loss.detach(),
            "cos_loss": cos_loss.detach(),
            "commit_loss": q.commit_loss.detach(),
            "code_perplexity": perplexity,
            "codes_used": (used > 0).sum().float(),
        }
        return loss, stats, feats.shape[0]

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def export(self) -> dict[str, Any]:
        return {"tokenizer_kind": "distilled", "codebook_size": self.quantize.num_codes}


class RandomTokenizerModel(AbsTrainModel):
    """Training model of the random-projection tokenizer: nothing to learn (``optim.max_updates 0``);
    forward reports code usage so validation still says something. State dict: ``tokenizer.*``."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.tokenizer = RandomProjectionTokenizer(cfg.patch_size, cfg.codebook_size, cfg.codebook_dim, cfg.seed)

    def forward(self, batch: dict[str, Any]):
        feats, padding_mask = batch["feats"], batch.get("padding_mask")
        codes = self.tokenizer.tokenize(feats, padding_mask)
        token_mask = self.tokenizer.token_mask(feats, padding_mask)
        valid = torch.ones_like(codes, dtype=torch.bool) if token_mask is None else ~token_mask
        used = torch.bincount(codes[valid], minlength=self.tokenizer.codebook_size)
        p = used.float() / used.sum().clamp(min=1)
        perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())
        loss = torch.zeros((), device=feats.device)
        return loss, {"loss": loss, "code_perplexity": perplexity, "codes_used": (used > 0).sum().float()}, feats.shape[0]

    def export(self) -> dict[str, Any]:
        return {"tokenizer_kind": "random", "codebook_size": self.tokenizer.codebook_size}
