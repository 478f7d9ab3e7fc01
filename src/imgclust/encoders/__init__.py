"""Image encoders behind one registry: ``create_encoder(name)`` -> :class:`Encoder`."""

from .base import Encoder, EncoderSpec, l2_normalize, resolve_device
from .registry import ENCODERS, create_encoder, encoder_info, get_spec, list_encoders

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderSpec",
    "create_encoder",
    "encoder_info",
    "get_spec",
    "l2_normalize",
    "list_encoders",
    "resolve_device",
]
