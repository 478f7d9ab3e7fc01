"""Thumbnails and inlined images for the report: small base64 JPEGs, one per distinct file."""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

__all__ = ["make_thumbnails", "b64_file", "jpeg_b64"]


def _thumb_one(path: str, size: int, quality: int) -> str | None:
    from PIL import Image

    from ..pipeline.sources import DecodeError, load_image

    try:
        img = load_image(path)
    except DecodeError:
        return None
    # Never upscale: a 32x32 CIFAR image stays 32x32 (the page scales it), which halves the bytes.
    if max(img.size) > size:
        img.thumbnail((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def make_thumbnails(paths: Sequence[str], keys: Sequence[str] | None = None, size: int = 64, quality: int = 70,
                    workers: int | None = None) -> tuple[list[str | None], list[int]]:
    """Small base64 JPEGs, one per distinct image.

    Args:
        paths: Image files.
        keys: Identity per path (content hash); equal keys share one thumbnail.
        size: Longest side in pixels (smaller images are kept as they are).
        quality: JPEG quality.
        workers: Threads (Pillow releases the GIL while decoding and encoding).

    Returns:
        ``(thumbs, index)``: the distinct thumbnails (None when a file could not be read) and, per
        path, the position of its thumbnail in ``thumbs``.
    """
    keys = list(keys) if keys is not None else list(paths)
    first: dict[str, int] = {}
    todo: list[str] = []
    index: list[int] = []
    for p, k in zip(paths, keys):
        k = k or p
        if k not in first:
            first[k] = len(todo)
            todo.append(p)
        index.append(first[k])
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        thumbs = list(pool.map(lambda p: _thumb_one(p, size, quality), todo, chunksize=32))
    return thumbs, index


def b64_file(path: Path) -> str:
    """A file's bytes as base64 text (for ``data:`` URLs)."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def jpeg_b64(path: Path, size: int, quality: int = 80) -> str | None:
    """An image file re-encoded as a small JPEG (explain overlays are PNGs at model resolution)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((size, size), Image.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
    except OSError:
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")
