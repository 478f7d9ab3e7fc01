"""Raw pixels: the seeds' "without a pretrained encoder" baseline."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from .base import Encoder, EncoderSpec, l2_normalize

__all__ = ["PixelEncoder"]


class PixelEncoder(Encoder):
    """Each image resized to ``image_size`` squared, RGB values centred, flattened, L2-normalised."""

    def __init__(self, spec: EncoderSpec, device: str = "auto"):
        self.spec = spec
        self.device = "cpu"  # numpy only: nothing to gain from an accelerator

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images -> L2-normalised float32 (N, D)."""
        size = self.spec.image_size
        if not images:
            return np.zeros((0, self.spec.dim), np.float32)
        arr = np.stack([np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) for im in images])
        arr = (arr / 255.0 - np.asarray(self.spec.mean, np.float32)) / np.asarray(self.spec.std, np.float32)
        return l2_normalize(arr.reshape(len(images), -1))
