"""Task ``beats_ssl``: BEATs masked acoustic-token prediction (one per pre-training round).

``model.tokenizer`` names the tokenizer round's model.pt (``beats_tokenizer`` task); the training
model keeps the BEATs encoder at ``.encoder`` (keys ``encoder.*``, official names below the prefix),
which fine-tuning and ``audiossl.bin.extract`` load through :meth:`build_encoder`.
See :mod:`audiossl.models.beats.ssl`.
"""
from __future__ import annotations

from torch import nn

from audiossl.models.beats.backbone import BEATsBackbone
from audiossl.models.beats.ssl import BEATsSSLModel, SSLConfig
from audiossl.models.abs_train_model import AbsTrainModel
from audiossl.data.dataset import DataInfo
from audiossl.tasks.abs_task import AbsTask, register_task
from audiossl.tasks.beats_tokenizer import load_tokenizer


@register_task("beats_ssl")
class BeatsSSLTask(AbsTask):
    ModelConfig = SSLConfig

    @classmethod
    def build_model(cls, model_cfg: SSLConfig, data_info: DataInfo) -> AbsTrainModel:
        if not model_cfg.tokenizer:
            raise ValueError(
                "model.tokenizer is not set: BEATs pre-training predicts the labels of a tokenizer, "
                "e.g. --model.tokenizer exp/beats_tok_r1/model.pt"
            )
        return BEATsSSLModel(model_cfg, load_tokenizer(model_cfg.tokenizer))

    @classmethod
    def build_encoder(cls, model_cfg: SSLConfig) -> nn.Module:
        return BEATsBackbone(model_cfg.encoder_config())
