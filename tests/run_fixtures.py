"""Small synthetic image folders and run directories for the report / explore / animate tests.

Three visually distinct classes (red blobs, green rings, blue stripes) with random jitter, so
even the raw-pixel encoder separates them; one file in the "red" class carries a hostile name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["HOSTILE_NAME", "CLASSES", "draw_example", "make_image_folder", "make_run"]

HOSTILE_NAME = "<img src=x onerror=alert(1)>.png"
CLASSES = ("red", "green", "blue")


def draw_example(cls: str, rng: np.random.Generator, size: int = 48) -> Image.Image:
    """One image of class ``cls`` with random position, size and brightness jitter."""
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    j = lambda lo, hi: int(rng.integers(lo, hi))  # noqa: E731
    if cls == "red":
        x, y, r = j(10, size - 10), j(10, size - 10), j(8, 14)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(j(180, 256), j(0, 60), j(0, 60)))
        d.rectangle([0, 0, size // 3, size // 3], fill=(j(150, 220), j(0, 40), j(0, 40)))
    elif cls == "green":
        x, y, r = size // 2 + j(-4, 5), size // 2 + j(-4, 5), j(12, 18)
        d.ellipse([x - r, y - r, x + r, y + r], outline=(j(0, 60), j(150, 230), j(0, 60)), width=j(4, 7))
    else:
        w = j(4, 7)
        for s in range(-size, size, 2 * w):
            d.line([(s, 0), (s + size, size)], fill=(j(0, 50), j(0, 80), j(170, 255)), width=w)
    return img


def make_image_folder(root: str | Path, per_class: int = 12, size: int = 48, seed: int = 0,
                      hostile: bool = True) -> Path:
    """Write ``root/<class>/<class>_NN.png`` (+ the hostile name in ``red``); returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = HOSTILE_NAME if (hostile and cls == "red" and i == 0) else f"{cls}_{i:02d}.png"
            draw_example(cls, rng, size).save(root / cls / name)
    return root


def make_run(tmp: str | Path, *, encoder: str = "pixels", k: int | str = 3, per_class: int = 12,
             method: str = "kmeans", report: bool = True, plots: bool = True, seed: int = 0):
    """Cluster a fresh synthetic folder; returns ``(run_dir, image_root, result)``."""
    from imgclust.api import cluster_images

    tmp = Path(tmp)
    images = make_image_folder(tmp / "images", per_class=per_class, seed=seed)
    run_dir = tmp / "run"
    result = cluster_images([str(images)], encoder=encoder, k=k, labels="folder", map="pca", method=method,
                            cache_dir=tmp / "cache", out=run_dir, plots=plots, report=report, progress=False)
    return run_dir, images, result
