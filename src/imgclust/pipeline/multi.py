"""Several encoders on the same images: each embeds through its own store, rows aligned by image.

``--encoder efficientnet-lite0,efficientnet-lite1`` (or a list in the API) embeds the images once
per encoder. Every encoder's vectors are cached under that encoder's own fingerprint, exactly as a
single-encoder run would cache them (so a later single-encoder run reuses them and vice versa).
The result's ``embeddings`` are the encoders' vectors side by side, ``spaces`` their widths, and
only images every encoder could embed are kept (a file one encoder skipped is skipped for all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ImgclustError
from .embed import EmbedResult, embed_images
from .sources import ImageRecord, discover

__all__ = ["MultiEmbedResult", "embed_multi", "encoder_names"]


def encoder_names(encoder) -> list | None:
    """The encoders of a multi-encoder request (``"a,b"`` or a list of 2+), else ``None``."""
    if isinstance(encoder, str):
        names = [e.strip() for e in encoder.split(",") if e.strip()]
        if len(names) != len(set(names)):
            raise ImgclustError(f"--encoder lists an encoder twice: {encoder}")
        return names if len(names) > 1 else None
    if isinstance(encoder, (list, tuple)):
        return list(encoder) if len(encoder) > 1 else None
    return None


@dataclass
class MultiEmbedResult(EmbedResult):
    """An :class:`EmbedResult` over several encoders; ``parts`` holds each encoder's own result."""

    parts: list[EmbedResult] = field(default_factory=list)

    @property
    def spaces(self) -> list[int]:
        """Width of each encoder's block of columns in ``embeddings``."""
        return [int(p.embeddings.shape[1]) for p in self.parts]

    @property
    def encoders(self) -> list:
        """The encoders used, in column order."""
        return [p.encoder for p in self.parts]


def _align(parts: list[EmbedResult]) -> tuple[list[int], list[list[int]]]:
    """Rows of the first part present in every part, and for each part the matching row indices."""
    index = [{r.path: i for i, r in enumerate(p.records)} for p in parts]
    keep = [i for i, r in enumerate(parts[0].records) if all(r.path in ix for ix in index[1:])]
    rows = [[ix[parts[0].records[i].path] for i in keep] for ix in index]
    return keep, rows


def embed_multi(inputs: str | Sequence[str] | Sequence[ImageRecord], encoders: Sequence, labels: str | None = None,
                device: str = "auto", runtime: str = "auto", batch_size: int | None = None,
                cache_dir: str | os.PathLike | None = None,
                cache: bool = True, progress: bool = False) -> MultiEmbedResult:
    """Embed the same images with each encoder (each through its own store) and align the rows.

    Args:
        inputs: Files, folders, globs, manifests, or a list of :class:`ImageRecord`.
        encoders: Two or more registry names / encoders.
        labels: ``folder`` or ``manifest`` (ignored for records).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        runtime: Inference runtime of each encoder (see :func:`~imgclust.pipeline.embed.embed_images`).
        batch_size: Images per forward pass (``None`` = each encoder's default).
        cache_dir: Embedding cache root.
        cache: Read and fill the caches.
        progress: Show progress bars.

    Returns:
        A :class:`MultiEmbedResult`: vectors side by side in ``encoders`` order, ``spaces`` their widths.
    """
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], ImageRecord):
        records = list(inputs)
    else:
        records = discover(inputs, labels=labels)
    parts = [embed_images(records, encoder=e, device=device, runtime=runtime, batch_size=batch_size,
                          cache_dir=cache_dir, cache=cache, progress=progress) for e in encoders]
    keep, rows = _align(parts)
    first = parts[0]
    emb = (np.concatenate([p.embeddings[r] for p, r in zip(parts, rows)], axis=1) if keep
           else np.zeros((0, sum(p.embeddings.shape[1] for p in parts)), np.float32))
    skipped = {s["path"]: s for p in parts for s in p.skipped}
    kept_paths = {first.records[i].path for i in keep}
    for r in first.records:
        if r.path not in kept_paths and r.path not in skipped:
            skipped[r.path] = {"path": r.path, "reason": "not embedded by every encoder"}
    return MultiEmbedResult(
        embeddings=emb.astype(np.float32), records=[first.records[i] for i in keep],
        hashes=[first.hashes[i] for i in keep], skipped=sorted(skipped.values(), key=lambda s: s["path"]),
        n_cached=sum(p.n_cached for p in parts), n_encoded=sum(p.n_encoded for p in parts),
        seconds=sum(p.seconds for p in parts), total_seconds=sum(p.total_seconds for p in parts),
        encoder=first.encoder, parts=parts)
