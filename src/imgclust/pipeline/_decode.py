"""The decoder shared by the local and the Ray embed engines: the same pixels, hence the same vectors."""

from __future__ import annotations

from typing import Callable

from PIL import Image

from .sources import DecodeError, ImageRecord, load_image

__all__ = ["Transform", "decoder"]

# A corruption or augmented view: ``transform(image, hash) -> image``.
Transform = Callable[[Image.Image, str], Image.Image]


def decoder(encoder, transform: Transform | None = None):
    """Decode at the size the encoder needs (JPEG draft), then its one resize, in a worker thread.

    A ``transform`` (corruption, augmented view) sees the full-size image, before the resize.
    """
    size = getattr(encoder, "decode_size", None) if transform is None else None
    prepare = getattr(encoder, "prepare", None)

    def decode(rec: ImageRecord, key: str | None = None):
        try:
            img = load_image(rec.path, min_size=size)
            if transform is not None:
                img = transform(img, key)
            return (prepare(img) if prepare is not None else img), None
        except DecodeError as exc:
            return None, exc.reason
    return decode
