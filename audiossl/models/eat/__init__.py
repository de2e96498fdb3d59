"""EAT (Efficient Audio Transformer): encoder, inverse block multi-mask, CNN decoder, EMA teacher
targets and loss, and the official checkpoint layouts. Start at :mod:`audiossl.models.eat.pretrain`."""
from audiossl.models.eat.encoder import EATEncoder, EATEncoderConfig, sincos_positions_2d
from audiossl.models.eat.pretrain import EATPretrainConfig, EATPretrainModel

__all__ = ["EATEncoder", "EATEncoderConfig", "EATPretrainConfig", "EATPretrainModel", "sincos_positions_2d"]
