"""A classification head over any pre-trained encoder (BEATs, EAT, or any ``AbsEncoder``).

Two poolings, one per official recipe:

* ``mean`` (BEATs): average the patch tokens that are not padding, then one Linear. The official
  fine-tuned BEATs applies its Linear ``predictor`` to every patch, zeroes the logits of padded
  patches and averages over the others; since a Linear commutes with a mean, that equals
  "mean over unpadded tokens, then Linear" exactly (up to float rounding). The official model applies
  its dropout per patch before the Linear; ours drops the pooled vector (identical in evaluation).
* ``cls`` (EAT): the CLS token -> LayerNorm (``fc_norm`` in the official code, eps 1e-6) -> Linear.

Submodules are named ``encoder``, ``head_norm`` (``nn.Identity`` when off) and ``head``, so a model
state dict has ``encoder.*``, ``head_norm.*``, ``head.*`` keys, the layout the checkpoint importers
write for released fine-tuned models.

Fixed-size embeddings for variable-length audio: :meth:`AudioClassifier.features` gives one (D,)
vector per clip: the mean over the tokens that the encoder's token padding mask leaves unpadded, or
the CLS token. Which tokens those are is the encoder's rule, not "every patch holding a real frame":
BEATs maps frames to tokens in equal consecutive chunks, as its official code does, so on a partly
padded last time step its low-frequency tokens count as real and its high-frequency ones as padded
(``audiossl.models.beats.backbone``, module docstring).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from audiossl.models.abs_encoder import AbsEncoder, EncoderOutput

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")


def masked_mean(tokens: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the tokens that are not padding.

    Args:
        tokens: (B, N, D) token vectors.
        padding_mask: (B, N) bool, True on padding tokens; None means nothing is padded.

    Returns:
        (B, D). A clip whose tokens are all padding gets a zero vector (not NaN).
    """
    if padding_mask is None:
        return tokens.mean(dim=1)
    B, N, D = tokens.shape
    assert padding_mask.shape == (B, N), f"padding_mask {tuple(padding_mask.shape)} does not match tokens {(B, N)}"
    keep = (~padding_mask).unsqueeze(-1).to(tokens.dtype)  # (B, N, 1)
    count = keep.sum(dim=1).clamp(min=1.0)  # (B, 1)
    return (tokens * keep).sum(dim=1) / count


class AudioClassifier(nn.Module):
    """Encoder -> pooling -> head_norm -> dropout -> Linear head.

    Args:
        encoder: the pre-trained encoder (an ``AbsEncoder``).
        num_classes: number of output classes C.
        pooling: "mean" over unpadded tokens (BEATs) or "cls" (EAT; the encoder must give a CLS token).
        head_norm: LayerNorm on the pooled vector before the head (EAT's ``fc_norm``).
        head_norm_eps: its epsilon (1e-6 in EAT's fairseq code; the Hugging Face port uses 1e-5).
        dropout: dropout on the pooled vector before the head.
        head_init_std: std of the head's truncated-normal weight init (see :meth:`init_head`).
    """

    def __init__(
        self,
        encoder: AbsEncoder,
        num_classes: int,
        pooling: str = "mean",
        head_norm: bool = False,
        head_norm_eps: float = 1e-6,
        dropout: float = 0.0,
        head_init_std: float = 2e-5,
    ):
        super().__init__()
        assert pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {pooling!r}"
        assert num_classes > 0, f"num_classes must be positive, got {num_classes}"
        self.pooling = pooling
        self.num_classes = num_classes
        self.head_init_std = head_init_std
        self.encoder = encoder
        dim = encoder.embed_dim
        self.head_norm = nn.LayerNorm(dim, eps=head_norm_eps) if head_norm else nn.Identity()
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(dim, num_classes)
        self.init_head()

    # --- forward -------------------------------------------------------------------------------
    def pool(self, out: EncoderOutput) -> torch.Tensor:
        """(B, D) pooled vector from an encoder output."""
        if self.pooling == "cls":
            assert out.cls is not None, (
                f"pooling 'cls' needs an encoder with a CLS token; {type(self.encoder).__name__} gives none: "
                "use pooling: mean"
            )
            return out.cls
        return masked_mean(out.tokens, out.padding_mask)

    def features(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) clip embedding: the pooled encoder output, before head_norm and head.

        Args:
            feats: (B, T, F) normalised fbank.
            padding_mask: (B, T) bool, True on padded frames.
        """
        return self.pool(self.encoder(feats, padding_mask))

    def logits_from_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) logits from (B, D) pooled vectors."""
        return self.head(self.head_dropout(self.head_norm(pooled)))

    def logits(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) logits for (B, T, F) normalised fbank."""
        return self.logits_from_features(self.features(feats, padding_mask))

    def forward(self, feats: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(feats, padding_mask)

    # --- optimiser hooks -------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.encoder.num_layers

    def layer_id(self, param_name: str) -> int:
        """Depth for layer-wise LR decay: the encoder's own ids, ``num_layers + 1`` for the head."""
        if param_name.startswith("encoder."):
            return self.encoder.layer_id(param_name[len("encoder."):])
        return self.encoder.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    # --- init ------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_head(self) -> None:
        """Head weight ~ N(0, head_init_std^2) truncated at +-2 std, bias 0; head_norm weight 1, bias 0.

        The std is a choice with sources: 2e-5 (the default) is MAE's and Audio-MAE's fine-tuning head
        init (``main_finetune.py``), which starts every clip at near-uniform predictions; EAT's
        fine-tuning code (``models/EAT_audio_classification.py``) uses 0.02, so the EAT configs set that.
        """
        std = self.head_init_std
        nn.init.trunc_normal_(self.head.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.head.bias)
        if isinstance(self.head_norm, nn.LayerNorm):
            nn.init.ones_(self.head_norm.weight)
            nn.init.zeros_(self.head_norm.bias)
