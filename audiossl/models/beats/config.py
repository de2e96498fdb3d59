"""BEATs configuration: the official cfg dict as a typed dataclass.

Official checkpoints carry their configuration as a plain dict under ``'cfg'`` whose keys are the
attribute names of the official ``BEATsConfig`` class. We keep those names, so a cfg dict read from an
official file, the ``model.encoder`` section of our YAML configs and :class:`BEATsConfig` all speak
the same language.

Two sets of defaults exist and they differ:

* :class:`BEATsConfig` field defaults are the values of the *released* checkpoints (design notes,
  section 3): 16x16 patches, DeepNorm, 320 relative-position buckets with max_distance 800, the gated
  relative bias, layer-wise gradient decay 0.6. Use them for new models.
* :data:`OFFICIAL_CLASS_DEFAULTS` are the defaults of the official Python class (patch size -1, no
  DeepNorm, max_distance 1280, ...). :meth:`BEATsConfig.from_official` fills keys missing from an
  official cfg with these, because that is what the official code would have run with.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# Defaults of the official BEATsConfig class (microsoft/unilm beats/BEATs.py). Only used to fill keys
# that an official cfg dict lacks; a released checkpoint's cfg normally has all of them.
OFFICIAL_CLASS_DEFAULTS: dict[str, Any] = {
    "input_patch_size": -1,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 1.0,
    "layer_norm_first": False,
    "deep_norm": False,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
    "finetuned_model": False,
    "predictor_dropout": 0.1,
    "predictor_class": 527,
}

# Keys of the official Tokenizers cfg on top of the backbone's (beats/Tokenizers.py).
OFFICIAL_TOKENIZER_DEFAULTS: dict[str, Any] = {"quant_n": 1024, "quant_dim": 256}

ATTN_IMPLS = ("sdpa", "reference")
ACTIVATIONS = ("gelu", "relu")


@dataclass
class BEATsConfig:
    """Hyper-parameters of the BEATs backbone (official key names; defaults = released checkpoints).

    Every field but ``attn_impl`` is an official cfg key; ``attn_impl`` is ours and is never written
    to an official checkpoint.
    """

    # front end: Conv2d(1, embed_dim, input_patch_size, stride input_patch_size) on (B, 1, T, 128)
    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    # Transformer
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12  # the paper's "8 heads" is a typo; released cfgs say 12
    activation_fn: str = "gelu"
    # gradients of layer i are scaled by ratio**(L-1-i), everything below the layers by ratio**L
    layer_wise_gradient_decay_ratio: float = 0.6
    layer_norm_first: bool = False  # pre-LN; the released models are post-LN with DeepNorm
    deep_norm: bool = True
    # dropouts (released fine-tuned cfgs use 0.0; pre-trained cfgs: read them from the file)
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.05
    dropout_input: float = 0.0
    # convolutional positional embedding: Conv1d(D, D, conv_pos, groups conv_pos_groups), weight norm
    conv_pos: int = 128
    conv_pos_groups: int = 16
    # bucketed relative position bias, shared by all layers, gated per query (gru_rel_pos)
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800  # the official class default is 1280; released checkpoints use 800
    gru_rel_pos: bool = True
    # fine-tuned checkpoints only (the per-patch predictor becomes our classifier's head)
    finetuned_model: bool = False
    predictor_dropout: float = 0.0
    predictor_class: int = 527
    # ours: "sdpa" (F.scaled_dot_product_attention, the gated bias as an additive mask) or
    # "reference" (explicit softmax, the official arithmetic); both give the same numbers.
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        assert self.input_patch_size > 0, (
            f"input_patch_size must be positive, got {self.input_patch_size} (official cfgs that lack "
            "the key mean 16 in practice: set it explicitly)"
        )
        assert self.encoder_embed_dim % self.encoder_attention_heads == 0, (
            f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
            f"encoder_attention_heads {self.encoder_attention_heads}"
        )
        assert not (self.deep_norm and self.layer_norm_first), "deep_norm and layer_norm_first exclude each other"
        assert self.activation_fn in ACTIVATIONS, f"activation_fn must be one of {ACTIVATIONS}, got {self.activation_fn!r}"
        assert self.attn_impl in ATTN_IMPLS, f"attn_impl must be one of {ATTN_IMPLS}, got {self.attn_impl!r}"
        assert self.encoder_embed_dim % self.conv_pos_groups == 0, (
            f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by conv_pos_groups {self.conv_pos_groups}"
        )

    @property
    def head_dim(self) -> int:
        return self.encoder_embed_dim // self.encoder_attention_heads

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | None, where: str = "model.encoder") -> "BEATsConfig":
        """Strict: build from one of *our* config sections; an unknown key is an error naming it.

        Missing keys take this class's defaults (the released-checkpoint values).
        """
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - cls.field_names())
        if unknown:
            raise ValueError(
                f"{where}: unknown BEATs config key(s) {', '.join(unknown)}; "
                f"known keys: {', '.join(sorted(cls.field_names()))}"
            )
        return cls(**cfg)

    @classmethod
    def from_official(cls, cfg: dict[str, Any]) -> "BEATsConfig":
        """Lenient: build from an official checkpoint's ``cfg`` dict.

        Keys we do not model (e.g. the tokenizer's quant_n) are ignored with a debug log; missing
        keys take the official class defaults, as the official code would.
        """
        known = cls.field_names()
        ignored = sorted(set(cfg) - known)
        if ignored:
            logger.debug("official BEATs cfg: ignoring key(s) %s", ", ".join(ignored))
        missing = sorted(k for k in OFFICIAL_CLASS_DEFAULTS if k not in cfg)
        if missing:
            logger.debug("official BEATs cfg: key(s) %s missing, using the official class defaults", ", ".join(missing))
        values = {**OFFICIAL_CLASS_DEFAULTS, **{k: v for k, v in cfg.items() if k in known}}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """All fields, ours included (what goes into the ``model.encoder`` section)."""
        return dataclasses.asdict(self)

    def to_official(self) -> dict[str, Any]:
        """The official cfg dict: every official key, none of ours."""
        d = self.to_dict()
        return {k: d[k] for k in OFFICIAL_CLASS_DEFAULTS}
