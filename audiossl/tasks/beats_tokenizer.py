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

import torch
from torch import nn

from audiossl.models.beats.backbone import BEATsBackbone
from audiossl.models.beats.tokenizer import (
    DistilledTokenizer,
    RandomProjectionTokenizer,
    RandomTokenizerModel,
    TokenizerConfig,
    PatchLogitsTeacher,
    TokenizerDistillModel,
)
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.data.dataset import DataInfo
from audiossl.models.checkpoint import load_model, load_strict
from audiossl.tasks.abs_task import AbsTask, register_task
from audiossl.tasks.encoder import FINETUNE_TASK, load_encoder, sub_state


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
    obj = load_model(path)
    if obj["task"] == FINETUNE_TASK:
        from audiossl.tasks.finetune import load_finetuned

        return PatchLogitsTeacher(load_finetuned(obj, source=str(path))).eval()
    return load_encoder(obj, str(path))


def load_tokenizer(path: str | os.PathLike | dict, source: str | None = None) -> nn.Module:
    """The trained tokenizer of a ``beats_tokenizer`` model.pt (a path, or the file already read,
    ``source`` naming it), in eval mode; it has ``tokenize(feats, padding_mask) -> (B, N)`` and
    ``codebook_size``. Built on the meta device, it takes the file's tensors (no random init)."""
    from audiossl.train.config import dataclass_from_dict

    obj = path if isinstance(path, dict) else load_model(path)
    path = (source or "model.pt") if isinstance(path, dict) else path
    if obj["task"] != BeatsTokenizerTask.name:
        raise ValueError(f"{path}: a model.pt of task {obj['task']!r}, not a beats_tokenizer one (model.tokenizer must point at exp/beats_tok_r<r>/model.pt)")
    cfg = dataclass_from_dict(TokenizerConfig, dict(obj["config"]["model"]), f"{path}: config.model")
    with torch.device("meta"):
        tok = BeatsTokenizerTask.build_tokenizer(cfg)
    if cfg.kind == "random":
        state = sub_state(obj["model"], "tokenizer.")
    else:
        state = {k: v for k, v in obj["model"].items() if k.startswith(("encoder.", "quantize_layer.", "quantize."))}
    load_strict(tok, state, f"{path} (tokenizer of kind {cfg.kind})")
    return tok.eval()
