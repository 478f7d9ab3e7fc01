"""The embedded demo dataset: photos bundled with scikit-image.

Each photo is expanded into a group of random crops, flips and colour shifts. The task is to
recover which photo each image came from.

Nothing is downloaded: the photos ship inside scikit-image's wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["DEMO_PHOTOS", "make_demo_dataset"]

# folder name -> scikit-image loader; all bundled (no pooch download), visually distinct.
DEMO_PHOTOS = {
    "astronaut": "astronaut",
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "galaxies": "hubble_deep_field",
    "tissue": "immunohistochemistry",
    "retina": "retina",
    "motorcycle": "stereo_motorcycle",
    "cameraman": "camera",
    "coins": "coins",
}


def _load(name: str):
    from PIL import Image
    from skimage import data

    arr = getattr(data, name)()
    if isinstance(arr, tuple):
        arr = arr[0]
    img = Image.fromarray(arr)
    return img.convert("RGB")


def _augment(img, rng: np.random.Generator, size: int):
    from PIL import Image, ImageEnhance

    w, h = img.size
    area = w * h * rng.uniform(0.04, 0.6)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(min(w, np.sqrt(area * ratio)))
    ch = int(min(h, np.sqrt(area / ratio)))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
    # A small hue shift: rotate the RGB channels' mix slightly.
    arr = np.asarray(out, np.float32)
    shift = rng.uniform(-12, 12, size=3)
    arr = np.clip(arr + shift, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def make_demo_dataset(root: str | os.PathLike, per_class: int = 24, size: int = 160, random_state: int = 0) -> Path:
    """Write ``root/<photo>/<nn>.jpg``: ``per_class`` augmented views of each demo photo.

    Idempotent: an existing complete dataset is left as is.
    """
    import io

    from .._io import atomic_write_bytes

    root = Path(root)
    rng = np.random.default_rng(random_state)
    for label, loader in DEMO_PHOTOS.items():
        folder = root / label
        if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= per_class:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        img = _load(loader)
        sub = np.random.default_rng(rng.integers(1 << 31))
        for i in range(per_class):
            buf = io.BytesIO()
            _augment(img, sub, size).save(buf, format="JPEG", quality=90)
            atomic_write_bytes(folder / f"{i:03d}.jpg", buf.getvalue())
    return root
