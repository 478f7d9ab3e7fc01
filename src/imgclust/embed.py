"""Embed records through the store: hash, reuse cached vectors, decode and encode the rest."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .encoders import Encoder
from .progress import progress_bar
from .sources import DecodeError, ImageRecord, file_hash, load_image
from .store import EmbeddingStore

__all__ = ["EmbedResult", "embed_records"]


@dataclass
class EmbedResult:
    """Embeddings of the usable records, in input order, and what was skipped and why."""

    embeddings: np.ndarray
    records: list[ImageRecord]
    hashes: list[str]
    skipped: list[dict] = field(default_factory=list)
    n_cached: int = 0
    n_encoded: int = 0
    seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.n_encoded / self.seconds if self.seconds > 0 and self.n_encoded else 0.0


def _hash_one(rec: ImageRecord):
    try:
        return file_hash(rec.path), None
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"


def _decode_one(rec: ImageRecord):
    try:
        return load_image(rec.path), None
    except DecodeError as exc:
        return None, exc.reason


def embed_records(records: Sequence[ImageRecord], encoder: Encoder, store: EmbeddingStore | None = None,
                  batch_size: int = 64, flush_every: int = 512, workers: int | None = None,
                  progress: bool = True) -> EmbedResult:
    """Embed ``records`` with ``encoder``, reading and filling ``store`` when given.

    Files that cannot be read or decoded are skipped and reported, never fatal. New vectors
    are flushed to the store every ``flush_every`` images, so a killed run resumes from there.

    Args:
        records: Images to embed.
        encoder: Any :class:`~imgclust.encoders.Encoder`.
        store: Cache for this encoder's fingerprint, or ``None`` for no caching.
        batch_size: Images per forward pass.
        flush_every: Images between store writes.
        workers: Decoding threads (default: min(4, cpu count)).
        progress: Show progress bars.
    """
    t0 = time.perf_counter()
    workers = workers or min(4, os.cpu_count() or 1)
    records = list(records)
    skipped: list[dict] = []
    hashes: list[str | None] = [None] * len(records)
    with ThreadPoolExecutor(workers) as pool, progress_bar(len(records), "hashing", progress, "file") as adv:
        for i, (h, err) in enumerate(pool.map(_hash_one, records, chunksize=64)):
            hashes[i] = h
            if err:
                skipped.append({"path": records[i].path, "reason": err})
            adv()

    vectors: dict[str, np.ndarray] = {}
    todo: list[int] = []
    first_of: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h is None:
            continue
        if store is not None and h in store:
            continue
        if h not in first_of:  # identical files are decoded and encoded once
            first_of[h] = i
            todo.append(i)
    n_cached = 0
    if store is not None:
        present = [h for h in hashes if h is not None]
        found, vecs = store.get(present)
        for h, v in zip([h for h, f in zip(present, found) if f], vecs):
            vectors[h] = v
        n_cached = int(found.sum())

    bad: dict[str, str] = {}
    t_enc = time.perf_counter()
    n_encoded = 0
    if todo:
        pending_h: list[str] = []
        pending_v: list[np.ndarray] = []

        def flush():
            if store is not None and pending_h:
                store.add(pending_h, np.concatenate(pending_v))
            pending_h.clear()
            pending_v.clear()

        batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]
        with ThreadPoolExecutor(workers) as pool, progress_bar(len(todo), f"embedding ({encoder.name})",
                                                               progress) as adv:
            # Decode the next batch in threads while the model runs on the current one.
            nxt = pool.map(_decode_one, [records[i] for i in batches[0]]) if batches else None
            try:
                for b, batch in enumerate(batches):
                    decoded = list(nxt)
                    nxt = pool.map(_decode_one, [records[i] for i in batches[b + 1]]) if b + 1 < len(batches) else None
                    imgs, ok = [], []
                    for i, (img, err) in zip(batch, decoded):
                        if img is None:
                            bad[hashes[i]] = err
                        else:
                            imgs.append(img)
                            ok.append(i)
                    if imgs:
                        emb = encoder.encode_images(imgs)
                        for i, v in zip(ok, emb):
                            vectors[hashes[i]] = v
                        pending_h.extend(hashes[i] for i in ok)
                        pending_v.append(emb)
                        n_encoded += len(ok)
                    if sum(len(v) for v in pending_v) >= flush_every:
                        flush()
                    adv(len(batch))
            finally:
                # Interrupted (Ctrl-C) or the encoder failed: keep the batches already encoded so a
                # re-run resumes from here (pending rows are complete batches; never write a half one).
                if sum(len(v) for v in pending_v) == len(pending_h):
                    flush()
    enc_seconds = time.perf_counter() - t_enc

    kept_idx = []
    for i, h in enumerate(hashes):
        if h is None:
            continue
        if h in bad:
            skipped.append({"path": records[i].path, "reason": bad[h]})
        elif h in vectors:
            kept_idx.append(i)
    dim = encoder.dim or (len(next(iter(vectors.values()))) if vectors else 0)
    emb = (np.stack([vectors[hashes[i]] for i in kept_idx]).astype(np.float32) if kept_idx
           else np.zeros((0, dim), np.float32))
    skipped.sort(key=lambda s: s["path"])
    res = EmbedResult(embeddings=emb, records=[records[i] for i in kept_idx], hashes=[hashes[i] for i in kept_idx],
                      skipped=skipped, n_cached=n_cached, n_encoded=n_encoded, seconds=enc_seconds)
    res.total_seconds = time.perf_counter() - t0
    return res
