"""Task "eat_pretrain": EAT self-supervised pre-training (student, CNN decoder, EMA teacher).

The model and its config live in :mod:`audiossl.models.eat.pretrain`; the config's ``model:``
section is :class:`~audiossl.models.eat.pretrain.EATPretrainConfig`, whose defaults are the official
EAT-base values with their sources. ``model.init`` starts from a ``model.pt`` of this task (for
example an official checkpoint converted by ``audiossl.bin.import_checkpoint``).
"""
from __future__ import annotations

import logging

from audiossl.models.eat.encoder import EATEncoder
from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import AbsTask, register_task
from audiossl.models.checkpoint import load_model

logger = logging.getLogger(__name__)


@register_task("eat_pretrain")
class EATPretrainTask(AbsTask):
    ModelConfig = EATPretrainConfig

    @classmethod
    def build_model(cls, model_cfg: EATPretrainConfig, data_info: DataInfo) -> EATPretrainModel:
        assert data_info.feat_dim == model_cfg.num_mel_bins, (
            f"the features have {data_info.feat_dim} bins but model.num_mel_bins is {model_cfg.num_mel_bins}"
        )
        model = EATPretrainModel(model_cfg)
        if model_cfg.init:
            load_pretrain_init_(model, model_cfg.init)
        return model

    @classmethod
    def build_encoder(cls, model_cfg: EATPretrainConfig) -> EATEncoder:
        return EATEncoder(model_cfg.encoder_config())


def load_pretrain_init_(model: EATPretrainModel, path: str) -> None:
    """Load every weight of an ``eat_pretrain`` model.pt into ``model`` (strict)."""
    obj = load_model(path)
    if obj["task"] != EATPretrainTask.name:
        raise ValueError(
            f"{path}: model.init must be a model.pt of task {EATPretrainTask.name!r}, this one is "
            f"{obj['task']!r}"
        )
    missing, unexpected = model.load_state_dict(obj["model"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not fit model: missing keys {sorted(missing)[:10]}, unexpected keys "
            f"{sorted(unexpected)[:10]}; check that its model config matches this one"
        )
    logger.info("initialised from %s", path)
