"""Shared fixtures: synthetic image folders and well-separated blobs. Everything is offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

# Three visually unmistakable classes: colour + shape. Raw pixels separate them perfectly.
CLASSES = {
    "red_circles": ((220, 30, 30), "circle"),
    "green_squares": ((30, 200, 40), "square"),
    "blue_triangles": ((40, 50, 220), "triangle"),
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Safety net: even a call that forgets cache_dir never writes to ~/.cache."""
    monkeypatch.setenv("IMGCLUST_CACHE", str(tmp_path_factory.mktemp("default-cache")))


def make_image(color, shape: str = "circle", size: int = 32, seed: int = 0, noise: float = 12.0) -> Image.Image:
    """A light-grey canvas with one coloured shape whose position/size jitter, plus pixel noise."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (235, 235, 235))
    d = ImageDraw.Draw(img)
    r = size * rng.uniform(0.3, 0.4)
    cx, cy = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=color)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    arr = np.asarray(img, np.float32) + rng.normal(0, noise, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_image_folder(root: Path, per_class: int = 10, size: int = 32, fmt: str = "png") -> dict[str, list[Path]]:
    """``root/<class>/<i>.<fmt>`` for the three :data:`CLASSES`; returns class -> paths."""
    out: dict[str, list[Path]] = {}
    for c, (name, (color, shape)) in enumerate(CLASSES.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        out[name] = []
        for i in range(per_class):
            p = folder / f"{i:03d}.{fmt}"
            make_image(color, shape, size=size, seed=1000 * c + i).save(p)
            out[name].append(p)
    return out


def write_random_images(folder: Path, n: int, size: int = 8, seed: int = 0, start: int = 0) -> list[Path]:
    """``n`` distinct random-noise PNGs (every file has different content)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(start, start + n):
        p = folder / f"img{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """3 classes x 10 small PNGs in class subfolders."""
    root = tmp_path / "images"
    write_image_folder(root)
    return root


def make_blobs(n_per: int = 30, centers: int = 4, dim: int = 8, spread: float = 0.05, seed: int = 0):
    """Tight Gaussian blobs around far-apart centres: (X float32, y int)."""
    rng = np.random.default_rng(seed)
    c = np.zeros((centers, dim), np.float32)
    for i in range(centers):
        c[i, i % dim] = 10.0 * (1 + i // dim)
    X = np.concatenate([c[i] + spread * rng.standard_normal((n_per, dim)) for i in range(centers)]).astype(np.float32)
    y = np.repeat(np.arange(centers), n_per)
    return X, y


@pytest.fixture
def blobs():
    return make_blobs()


def is_png(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
    if head != b"\x89PNG\r\n\x1a\n":
        return False
    with Image.open(path) as im:
        im.verify()
    return True


@pytest.fixture
def limit_threads():
    """One BLAS/OpenMP thread: on a busy 2-core box, OpenMP spin-waiting makes t-SNE and faiss
    10-40x slower than running single-threaded (and single-threaded is deterministic)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
