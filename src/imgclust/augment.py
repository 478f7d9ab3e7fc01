"""Augmented views of every image (``imgclust run --augment N``): more points, and views for SCAN/TEMI.

Each view is a random resized crop (35-100 % of the area, aspect 3/4-4/3), a horizontal flip
with probability 1/2 and a colour jitter (brightness, contrast, saturation x0.6-1.4, hue
+-0.05 of a turn), drawn from a generator seeded with ``(seed, file
hash, view number)``: the same seed gives the same views on every machine and in any
collection. View ``j`` of every image is embedded once into its own store
(``<encoder fingerprint>+augment-v<j>-seed<seed>-r<version>``), so re-runs, and runs with more
views, re-encode nothing already done.

The views are used as ``augment_as`` says:

* ``points``: extra rows of the clustering (the ViT-pets seed's 3x dataset), marked
  ``augmented`` with their ``source`` image in ``clusters.parquet``;
* ``views``: only as augmentations of the heads (``SCAN.fit(X, views=...)``, ``TEMI``);
* ``both`` (default): extra rows, and each row's other views are its augmentations.

Scores on the original images alone are in ``metrics.json``'s ``augment`` entry, so a run with
views compares directly with one without.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance

from .errors import ImgclustError
from .pipeline.sources import ImageRecord

__all__ = ["augment_view", "view_transform", "embed_views", "AugmentedSet", "augmented_set", "summarize",
           "write_views", "AUGMENT_MODES"]

AUGMENT_MODES = ("both", "points", "views")
VERSION = 1
SCALE = (0.35, 1.0)  # share of the image area kept by the crop
RATIO = (3 / 4, 4 / 3)  # crop aspect ratio range
JITTER = 0.4  # brightness, contrast and saturation factors in [1 - JITTER, 1 + JITTER]
HUE = 0.05  # hue shift in [-HUE, HUE] of a full turn


def _rng(seed: int, key: str, view: int) -> np.random.Generator:
    h = int(key[:16], 16) if key and all(c in "0123456789abcdef" for c in key[:16]) else zlib.crc32(key.encode())
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, h & 0xFFFFFFFFFFFFFFFF, int(view), 0xA06])


def _hue_shift(img: Image.Image, shift: float) -> Image.Image:
    hsv = np.asarray(img.convert("HSV"), np.int16).copy()
    hsv[..., 0] = (hsv[..., 0] + int(round(shift * 255))) % 256
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


def augment_view(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One augmented view, the same size as ``img``.

    Random resized crop (area share in :data:`SCALE`, aspect ratio in :data:`RATIO`, resized
    back with bicubic), horizontal flip with probability 0.5, brightness/contrast/saturation
    each scaled by a factor in ``1 +- JITTER`` (random order), hue shifted by up to
    ``HUE`` of a turn.
    """
    w, h = img.size
    area = w * h * rng.uniform(*SCALE)
    ratio = float(np.exp(rng.uniform(np.log(RATIO[0]), np.log(RATIO[1]))))
    cw, ch = max(1, min(w, int(round(np.sqrt(area * ratio))))), max(1, min(h, int(round(np.sqrt(area / ratio)))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BICUBIC)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    factors = rng.uniform(1 - JITTER, 1 + JITTER, size=3)
    ops = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
    for i in rng.permutation(3):
        out = ops[i](out).enhance(float(factors[i]))
    return _hue_shift(out, float(rng.uniform(-HUE, HUE)))


def view_transform(seed: int, view: int):
    """The :data:`~imgclust.pipeline.embed.Transform` making view ``view`` (1-based) of an image."""

    def transform(img: Image.Image, key: str) -> Image.Image:
        return augment_view(img, _rng(seed, key, view))

    return transform


def embed_views(records: Sequence[ImageRecord], hashes: Sequence[str], encoder, n_views: int, seed: int = 0,
                cache_dir=None, cache: bool = True, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """``(N, n_views, D)`` embeddings of the views of ``records`` (whose content hashes are ``hashes``)."""
    from .pipeline.embed import embed_records, open_store

    out = np.zeros((len(records), n_views, encoder.dim or 0), np.float32) if encoder.dim else None
    for j in range(1, n_views + 1):
        store = open_store(encoder, cache_dir, f"augment-v{j}-seed{seed}-r{VERSION}") if cache else None
        res = embed_records(records, encoder, store=store, batch_size=batch_size, progress=progress,
                            transform=view_transform(seed, j))
        got = dict(zip(res.hashes, res.embeddings))
        if any(h not in got for h in hashes):
            raise ImgclustError(f"view {j}: {sum(h not in got for h in hashes)} image(s) could not be embedded")
        if out is None:
            out = np.zeros((len(records), n_views, res.embeddings.shape[1]), np.float32)
        out[:, j - 1] = np.stack([got[h] for h in hashes])
    return out


@dataclass
class AugmentedSet:
    """What the clusterer gets: points (originals first), their records, and the heads' views."""

    embeddings: np.ndarray
    records: list[ImageRecord]
    hashes: list[str]
    n_original: int
    n_views: int
    mode: str
    seed: int
    views: np.ndarray | None = None  # (N, V, D) when the views are not rows ("views" mode)
    view_index: np.ndarray | None = None  # (M, V) rows that are each row's views ("both" mode)
    columns: dict = field(default_factory=dict)  # augmented / source / view, per row
    sources: list[ImageRecord] = field(default_factory=list)


def _view_path(out, i: int, j: int, src: str) -> str:
    if out is None:
        return f"{src}#view{j}"
    stem = Path(src).stem[:40]
    return str(Path(out) / "augmented" / f"{i:06d}-{stem}-v{j}.png")


def augmented_set(emb, views: np.ndarray, mode: str = "both", seed: int = 0,
                  out: str | os.PathLike | None = None) -> AugmentedSet:
    """Lay out the originals (``emb``, an EmbedResult) and their ``views`` as ``mode`` says.

    Rows are the originals, then view 1 of every image, view 2 of every image, ... (row
    ``j * N + i`` is view ``j`` of image ``i``). With ``out`` the augmented rows' paths are PNG
    files written there by :func:`write_views` (so the report and every later command can show
    them); without, they are ``<source>#view<j>``.
    """
    if mode not in AUGMENT_MODES:
        raise ImgclustError(f"unknown augment mode {mode!r}; valid: {', '.join(AUGMENT_MODES)}")
    n, V = len(emb.records), views.shape[1]
    base = dict(n_original=n, n_views=V, mode=mode, seed=seed, sources=list(emb.records))
    if mode == "views":
        return AugmentedSet(emb.embeddings, list(emb.records), list(emb.hashes), views=views, **base)
    X = np.concatenate([emb.embeddings, views.transpose(1, 0, 2).reshape(n * V, -1)]).astype(np.float32)
    records = list(emb.records) + [ImageRecord(_view_path(out, i, j, r.path), r.label, None)
                                   for j in range(1, V + 1) for i, r in enumerate(emb.records)]
    hashes = list(emb.hashes) + [f"{h}#v{j}" for j in range(1, V + 1) for h in emb.hashes]
    src = [r.path for r in emb.records]
    cols = {"augmented": [False] * n + [True] * (n * V), "source": src + src * V,
            "view": [0] * n + [j for j in range(1, V + 1) for _ in range(n)]}
    index = None
    if mode == "both":
        rows = np.arange(n * (V + 1))
        group = rows[:, None] % n + n * np.arange(V + 1)[None, :]  # every row's group, originals first
        index = np.stack([g[g != r] for g, r in zip(group, rows)])
    return AugmentedSet(X, records, hashes, view_index=index, columns=cols, **base)


def summarize(result, aug: AugmentedSet, views_used: bool) -> dict:
    """``metrics["augment"]``: the setup and the scores on the original images alone (first seed)."""
    from .metrics import external_scores, internal_scores

    n = aug.n_original
    info = {"n_views": aug.n_views, "used_as": aug.mode, "seed": aug.seed, "n_original": n,
            "n_points": int(len(result.labels)), "views_used_by_method": bool(views_used),
            "transform": {"crop_scale": list(SCALE), "crop_ratio": [round(r, 4) for r in RATIO], "flip": 0.5,
                          "jitter": JITTER, "hue": HUE}}
    lab = result.labels[:n]
    truth = [r.label for r in aug.sources]
    mask = np.array([t is not None for t in truth])
    if mask.any():
        info["external_originals"] = external_scores(np.asarray(truth, object)[mask].astype(str), lab[mask])
    if len(set(lab.tolist()) - {-1}) > 1:
        info["internal_originals"] = internal_scores(result.features[:n], lab)
    return info


def write_views(aug: AugmentedSet, out: str | os.PathLike, examples: int = 6) -> None:
    """Write the augmented rows' PNGs (the exact pixels that were embedded) and ``plots/augmentations.png``."""
    from ._io import atomic_write_bytes
    from .pipeline.sources import DecodeError, load_image
    from .report.experiments import augmentation_grid

    out = Path(out)
    write_rows = aug.mode != "views"
    grid_o, grid_v = [], []
    for i, (rec, h) in enumerate(zip(aug.sources, aug.hashes[:aug.n_original])):
        if not write_rows and i >= examples:
            break
        try:
            img = load_image(rec.path)
        except DecodeError:
            continue
        vs = [view_transform(aug.seed, j)(img, h) for j in range(1, aug.n_views + 1)]
        if i < examples:
            grid_o.append(img)
            grid_v.append(vs)
        if write_rows:
            for j, v in enumerate(vs, 1):
                import io

                buf = io.BytesIO()
                v.save(buf, format="PNG")
                atomic_write_bytes(_view_path(out, i, j, rec.path), buf.getvalue())
    if grid_o:
        augmentation_grid(grid_o, grid_v, out / "plots" / "augmentations.png")
