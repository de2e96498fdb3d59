"""EAT (Efficient Audio Transformer): encoder, inverse block multi-mask, CNN decoder, EMA teacher
targets and loss, and the official checkpoint layouts."""
from audiossl.models.eat.encoder import EATEncoder, EATEncoderConfig, sincos_positions_2d

__all__ = ["EATEncoder", "EATEncoderConfig", "sincos_positions_2d"]
