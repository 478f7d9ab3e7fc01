"""Named image corruptions at five severities, deterministic per seed and image (numpy and PIL only).

The severities follow ImageNet-C (Hendrycks & Dietterich, 2019) where it defines the
corruption; blur is scaled to the image size so a 32 px CIFAR image and a 224 px photo get a
comparable blur. Every random draw comes from a generator seeded with ``(seed, image hash,
corruption)`` and is made *before* the severity is applied, so one image's noise field or
occluder position is the same at every severity: a higher severity changes the pixels at
least as much as a lower one, and an image's corruption does not depend on which other images
are in the collection (its cached vector stays valid).

=================  =====================================================  ========================
name               what severity 1..5 means                               parameter
=================  =====================================================  ========================
gaussian_noise     additive N(0, s^2) noise on 0..1 pixels                s = .08 .12 .18 .26 .38
gaussian_blur      Gaussian blur, sigma = c * sqrt(short side / 224)      c = 1 2 3 4 6
jpeg               re-encoded as JPEG at this quality                     q = 25 18 15 10 7
brightness         this much added to every channel (0..1), clipped       d = .1 .2 .3 .4 .5
contrast           pixels pulled to the image mean: mean + c (x - mean)   c = .4 .3 .2 .1 .05
occlusion          a mid-grey rectangle covering this share of the area   a = .1 .2 .3 .4 .5
distractors        this many unrelated images per original mixed in       share = .1 .25 .5 .75 1
=================  =====================================================  ========================

``distractors`` is not an image transform (it adds images); :mod:`.robustness` handles it.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from ..errors import ImgclustError

__all__ = ["Corruption", "CORRUPTIONS", "SEVERITIES", "corrupt", "corruption_rng", "get_corruption",
           "parse_corruptions"]

SEVERITIES = (1, 2, 3, 4, 5)
# Bumped when a corruption's implementation changes, so old cached vectors are not reused.
VERSION = 1


@dataclass(frozen=True)
class Corruption:
    """One named corruption: its parameter at each severity and how it is applied.

    Attributes:
        name: Registry name.
        params: Parameter at severities 1..5.
        random: Whether it draws random numbers (its cache key then includes the seed).
        fn: ``fn(rgb_array_0_1, param, rng) -> rgb_array_0_1`` (None for ``distractors``).
        description: What the parameter is.
    """

    name: str
    params: tuple[float, ...]
    random: bool
    fn: Callable | None
    description: str

    def param(self, severity: int) -> float:
        """The parameter at ``severity`` (1..5)."""
        if severity not in SEVERITIES:
            raise ImgclustError(f"severity must be one of {', '.join(map(str, SEVERITIES))} (got {severity})")
        return self.params[severity - 1]

    def variant(self, severity: int, seed: int) -> str:
        """The embedding store variant: name, parameter, seed (random corruptions only), version."""
        tail = f"-seed{seed}" if self.random else ""
        return f"{self.name}-{self.param(severity):g}{tail}-v{VERSION}"


def corruption_rng(seed: int, key: str, name: str) -> np.random.Generator:
    """A generator for one image (``key``: its content hash) under one corruption and seed."""
    h = int(key[:16], 16) if key and all(c in "0123456789abcdef" for c in key[:16]) else zlib.crc32(key.encode())
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, h & 0xFFFFFFFFFFFFFFFF, zlib.crc32(name.encode())])


def _noise(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return x + s * rng.standard_normal(x.shape, dtype=np.float32)


def _blur(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    sigma = c * np.sqrt(min(x.shape[:2]) / 224.0)
    img = Image.fromarray(_to_uint8(x)).filter(ImageFilter.GaussianBlur(radius=float(sigma)))
    return np.asarray(img, np.float32) / 255.0


def _jpeg(x: np.ndarray, q: float, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(x)).save(buf, format="JPEG", quality=int(q))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255.0


def _brightness(x: np.ndarray, d: float, rng: np.random.Generator) -> np.ndarray:
    return x + d


def _contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(0, 1), keepdims=True)
    return mean + c * (x - mean)


# Largest occluder (severity 5) and its aspect-ratio range: the centre is drawn where it fits,
# so every smaller occluder around the same centre fits too and lies inside the larger ones.
_MAX_AREA, _RATIO = 0.5, (3 / 4, 4 / 3)


def _occlude(x: np.ndarray, a: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    ratio = float(np.exp(rng.uniform(np.log(_RATIO[0]), np.log(_RATIO[1]))))
    fw_max, fh_max = np.sqrt(_MAX_AREA * ratio), np.sqrt(_MAX_AREA / ratio)
    cx, cy = rng.uniform(fw_max / 2, 1 - fw_max / 2), rng.uniform(fh_max / 2, 1 - fh_max / 2)
    fw, fh = np.sqrt(a * ratio), np.sqrt(a / ratio)
    x0, x1 = int(round((cx - fw / 2) * w)), int(round((cx + fw / 2) * w))
    y0, y1 = int(round((cy - fh / 2) * h)), int(round((cy + fh / 2) * h))
    out = x.copy()
    out[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)] = 0.5
    return out


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("gaussian_noise", (0.08, 0.12, 0.18, 0.26, 0.38), True, _noise, "noise std on 0..1 pixels"),
    Corruption("gaussian_blur", (1, 2, 3, 4, 6), False, _blur, "blur sigma at 224 px"),
    Corruption("jpeg", (25, 18, 15, 10, 7), False, _jpeg, "JPEG quality"),
    Corruption("brightness", (0.1, 0.2, 0.3, 0.4, 0.5), False, _brightness, "added brightness"),
    Corruption("contrast", (0.4, 0.3, 0.2, 0.1, 0.05), False, _contrast, "contrast kept"),
    Corruption("occlusion", (0.1, 0.2, 0.3, 0.4, 0.5), True, _occlude, "occluded share of the area"),
    Corruption("distractors", (0.1, 0.25, 0.5, 0.75, 1.0), True, None, "distractor images per original"),
]}


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def get_corruption(name: str) -> Corruption:
    """The :class:`Corruption` called ``name`` (an :class:`ImgclustError` listing the valid ones)."""
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise ImgclustError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}") from None


def parse_corruptions(names: str | list[str] | None) -> list[str]:
    """``"all"``/``None`` or a comma-separated string or list -> validated corruption names."""
    if names is None or names == "all":
        return list(CORRUPTIONS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    for n in names:
        get_corruption(n)
    return list(names)


def corrupt(img: Image.Image, name: str, severity: int, seed: int = 0, key: str = "") -> Image.Image:
    """``img`` under corruption ``name`` at ``severity`` (1..5), deterministic for ``(seed, key)``.

    Args:
        img: An RGB image.
        name: A corruption name from :data:`CORRUPTIONS` (not ``distractors``).
        severity: 1 (mild) to 5 (severe).
        seed: Seed of the random draws.
        key: The image's identity (its content hash): different images get different noise.

    Returns:
        The corrupted RGB image, same size.
    """
    c = get_corruption(name)
    if c.fn is None:
        raise ImgclustError(f"{name} adds images; it is not a per-image corruption")
    x = np.asarray(img.convert("RGB"), np.float32) / 255.0
    out = c.fn(x, c.param(severity), corruption_rng(seed, key, name))
    return Image.fromarray(_to_uint8(out), "RGB")
