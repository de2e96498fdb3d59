"""Task ``beats_tokenizer``: a BEATs acoustic tokenizer (one per pre-training round).

``model.kind: random`` (round 1) is a frozen random-projection tokenizer: nothing is learnt, train it
with ``optim.max_updates 0`` so that the trainer only writes model.pt. ``model.kind: distilled``
(rounds >= 2) trains a Transformer tokenizer against ``model.teacher``: the previous round's
beats_ssl model.pt (its last layer is the target), or a fine-tuned ``finetune`` model.pt with mean
pooling (BEATs "iter3+": its per-patch logits are the target). See :mod:`audiossl.models.beats.tokenizer` for both, and for the state-dict
layout: ``tokenizer.*`` (random) or ``encoder.*``, ``quantize_layer.*``, ``quantize.*``,
``estimator.*`` (distilled).
"""
from __future__ import annotations

import os

from torch import nn

from audiossl.models.beats.backbone import BEATsBackbone
from audiossl.models.beats.checkpoint import load_encoder, load_strict, to_legacy_weight_norm
from audiossl.models.beats.tokenizer import (
    DistilledTokenizer,
    RandomProjectionTokenizer,
    RandomTokenizerModel,
    TokenizerConfig,
    PatchLogitsTeacher,
    TokenizerDistillModel,
)
from audiossl.tasks.abs_task import AbsTask, AbsTrainModel, DataInfo, register_task


@register_task("beats_tokenizer")
class BeatsTokenizerTask(AbsTask):
    ModelConfig = TokenizerConfig

    @classmethod
    def build_model(cls, model_cfg: TokenizerConfig, data_info: DataInfo) -> AbsTrainModel:
        if model_cfg.kind == "random":
            return RandomTokenizerModel(model_cfg)
        if not model_cfg.teacher:
            raise ValueError(
                "model.teacher is not set: a distilled tokenizer learns from the previous round's SSL "
                "model, e.g. --model.teacher exp/beats_ssl_r1/model.pt"
            )
        return TokenizerDistillModel(model_cfg, load_teacher(model_cfg.teacher))

    @classmethod
    def build_encoder(cls, model_cfg: TokenizerConfig) -> nn.Module:
        if model_cfg.kind == "random":
            raise NotImplementedError("a random-projection tokenizer has no encoder to fine-tune or extract from")
        return BEATsBackbone(model_cfg.encoder_config())

    @classmethod
    def build_tokenizer(cls, model_cfg: TokenizerConfig) -> nn.Module:
        """The tokenizer alone (no teacher, no estimator), untrained."""
        if model_cfg.kind == "random":
            return RandomProjectionTokenizer(
                model_cfg.patch_size, model_cfg.codebook_size, model_cfg.codebook_dim, model_cfg.seed
            )
        return DistilledTokenizer(model_cfg)


def load_teacher(path: str | os.PathLike) -> nn.Module:
    """A distilled tokenizer's teacher: the encoder of a pre-trained model.pt, or, for a fine-tuned
    classifier (task finetune, the "iter3+" rounds), a :class:`PatchLogitsTeacher` over it."""
    from audiossl.train.checkpoint import load_model

    obj = load_model(path)
    if obj["task"] == "finetune":
        from audiossl.tasks.finetune import load_finetuned

        return PatchLogitsTeacher(load_finetuned(obj)).eval()
    return load_encoder(path)


def load_tokenizer(path: str | os.PathLike | dict, source: str | None = None) -> nn.Module:
    """The trained tokenizer of a ``beats_tokenizer`` model.pt (a path, or the file already read,
    ``source`` naming it), in eval mode; it has ``tokenize(feats, padding_mask) -> (B, N)`` and
    ``codebook_size``."""
    from audiossl.train.config import dataclass_from_dict
    from audiossl.train.checkpoint import load_model

    obj = path if isinstance(path, dict) else load_model(path)
    path = (source or "model.pt") if isinstance(path, dict) else path
    if obj["task"] != BeatsTokenizerTask.name:
        raise ValueError(f"{path}: a model.pt of task {obj['task']!r}, not a beats_tokenizer one (model.tokenizer must point at exp/beats_tok_r<r>/model.pt)")
    cfg = dataclass_from_dict(TokenizerConfig, dict(obj["config"]["model"]), f"{path}: config.model")
    tok = BeatsTokenizerTask.build_tokenizer(cfg)
    if cfg.kind == "random":
        state = {k[len("tokenizer."):]: v for k, v in obj["model"].items() if k.startswith("tokenizer.")}
    else:
        state = {k: v for k, v in obj["model"].items() if k.startswith(("encoder.", "quantize_layer.", "quantize."))}
        state = to_legacy_weight_norm(state)
    load_strict(tok, state, f"{path} (tokenizer of kind {cfg.kind})")
    return tok.eval()
