"""Labelled image folders for benchmarks/quality.py, built offline from data that ships in packages.

- ``digits``: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``, 1,797
  8x8 grey images of 0-9 from UCI), written as 32x32 RGB PNGs in one folder per digit.

The folders are written once under a given root (never into the repository) and reused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digits_folder(root: str | Path, per_class: int | None = None) -> Path:
    """Write scikit-learn's digits as ``root/digits[-N]/<digit>/<index>.png``; returns the folder.

    Args:
        root: Where to write.
        per_class: Keep the first ``per_class`` images of each digit (``None`` = all 1,797).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    out = Path(root) / (f"digits-{per_class}" if per_class else "digits")
    done = out / ".complete"
    if done.exists():
        return out
    counts: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(data.images, data.target)):
        label = int(label)
        if per_class and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        # 0..16 ink -> white background, dark strokes, as a scanned digit would look.
        grey = (255 - np.asarray(img) * (255 / 16)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(grey).resize((32, 32), Image.BICUBIC).convert("RGB")
        (out / str(label)).mkdir(parents=True, exist_ok=True)
        im.save(out / str(label) / f"{i:04d}.png")
    done.write_text("ok\n")
    return out
