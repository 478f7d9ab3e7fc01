"""The training data: caption pairs read, images decoded once, captions tokenised, a seeded split.

Pairs are read with :func:`imgclust.pipeline.sources.read_manifest`: ``path,caption``
CSV/Parquet, or ROCOv2's ``ID,Caption`` CSV beside an image folder. Unreadable images and empty
captions are skipped and reported, never fatal. Images are decoded once; their preprocessed
tensors are kept in memory when they fit in ``cache_mb``, otherwise decoded again for every batch.
Identical captions (after lower-casing and collapsing spaces) share a group id, which the loss
and the recall use to treat them as the same text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...errors import ImgclustError
from ...pipeline.sources import DecodeError, ImageRecord, load_image
from .settings import FinetuneSettings

__all__ = ["read_pairs", "PairData", "prepare_pairs"]


def read_pairs(pairs: str | os.PathLike | Sequence[ImageRecord] | Sequence[tuple[str, str]]
               ) -> tuple[list[ImageRecord], list[dict]]:
    """Captioned records from a manifest (``path,caption`` or ROCOv2) or a list of pairs.

    Returns:
        ``(records with a caption, skipped)`` where ``skipped`` lists ``{"path", "reason"}``.
    """
    from ...pipeline.sources import read_manifest

    if isinstance(pairs, (str, os.PathLike)):
        path = os.path.expanduser(str(pairs))
        if not os.path.isfile(path):
            raise ImgclustError(f"pairs file not found: {path}")
        records = read_manifest(path)
    else:
        records = [r if isinstance(r, ImageRecord) else ImageRecord(str(r[0]), None, r[1]) for r in pairs]
    kept, skipped = [], []
    for r in records:
        if r.caption is None or not str(r.caption).strip():
            skipped.append({"path": r.path, "reason": "no caption"})
        else:
            kept.append(r)
    if not kept:
        raise ImgclustError("no image-caption pairs: the manifest needs a 'caption' column (or ROCOv2's 'Caption')")
    return kept, skipped


class _Pixels:
    """Preprocessed images by index: all in memory, or decoded again per batch when too many."""

    def __init__(self, encoder, records: list[ImageRecord], tensors=None):
        self.encoder = encoder
        self.records = records
        self.tensors = tensors

    def get(self, idx):
        if self.tensors is not None:
            return self.tensors[idx]
        return self.encoder.preprocess([load_image(self.records[int(i)].path) for i in idx]).cpu()


def _decode_all(encoder, records: list[ImageRecord], cache: bool, progress: bool, chunk: int = 64
                ) -> tuple[_Pixels, list[ImageRecord], list[dict]]:
    """Decode every image once: keep the usable ones (preprocessed, when caching), report the others."""
    import torch

    from ...progress import progress_bar

    ok: list[ImageRecord] = []
    skipped: list[dict] = []
    chunks, pending = [], []
    with progress_bar(len(records), "decode", enabled=progress) as advance:
        for r in records:
            try:
                img = load_image(r.path)
            except DecodeError as exc:
                skipped.append({"path": r.path, "reason": exc.reason})
            else:
                ok.append(r)
                if cache:
                    pending.append(img)
                    if len(pending) == chunk:
                        chunks.append(encoder.preprocess(pending).cpu())
                        pending = []
            advance()
    if cache and pending:
        chunks.append(encoder.preprocess(pending).cpu())
    tensors = torch.cat(chunks) if cache and chunks else None
    return _Pixels(encoder, ok, tensors), ok, skipped


def _caption_key(text: str) -> str:
    return " ".join(str(text).lower().split())


def _split(n: int, val_fraction: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``(val_idx, train_idx)``: a seeded permutation, at least one pair on each side when validating."""
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(n)
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 else 0), n - 2)
    return np.sort(perm[:n_val]), np.sort(perm[n_val:])


@dataclass
class PairData:
    """Everything the loop reads per batch, indexed by pair.

    Attributes:
        records: The usable pairs.
        skipped: ``{"path", "reason"}`` of every pair left out (no caption, unreadable image).
        pixels: Preprocessed images by index (:class:`_Pixels`).
        tokens: Tokenised captions, CPU tensors by name (``input_ids``, ``attention_mask``).
        groups: Caption group id per pair (identical captions share one), a CPU tensor.
        train_idx: Sorted indices of the training pairs.
        val_idx: Sorted indices of the held-out pairs.
        cached: Whether the preprocessed images are kept in memory.
    """

    records: list[ImageRecord]
    skipped: list[dict]
    pixels: _Pixels
    tokens: dict[str, Any]
    groups: Any
    train_idx: np.ndarray
    val_idx: np.ndarray
    cached: bool


def _report_skipped(records: list[ImageRecord], skipped: list[dict], progress: bool) -> None:
    from ...progress import console

    if len(records) < 2:
        example = f"; e.g. {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise ImgclustError(f"only {len(records)} usable image-caption pair(s), need at least 2 "
                            f"({len(skipped)} skipped{example})")
    if progress and skipped:
        console().print(f"[yellow]skipped {len(skipped)} pair(s)[/] (see history.json), e.g. "
                        f"{skipped[0]['path']}: {skipped[0]['reason']}", highlight=False)


def prepare_pairs(enc, records: list[ImageRecord], skipped: list[dict], cfg: FinetuneSettings) -> PairData:
    """Decode the images with ``enc``'s preprocessing, split the pairs and tokenise the captions."""
    import torch

    size = int(enc.spec.image_size or 224)
    cache = len(records) * 3 * size * size * 4 <= cfg.cache_mb * 2 ** 20
    pixels, records, bad = _decode_all(enc, records, cache=cache, progress=cfg.progress)
    skipped = skipped + bad
    _report_skipped(records, skipped, cfg.progress)
    val_idx, train_idx = _split(len(records), cfg.val_fraction, cfg.random_state)
    keys = [_caption_key(r.caption) for r in records]
    key_ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    groups = torch.tensor([key_ids[k] for k in keys])
    tokens = enc._tokenize([r.caption for r in records])
    tokens = {k: v.cpu() for k, v in tokens.items()}
    return PairData(records=records, skipped=skipped, pixels=pixels, tokens=tokens, groups=groups,
                    train_idx=train_idx, val_idx=val_idx, cached=cache)
