"""Images -> vectors through the store: hash, reuse cached vectors, decode and encode the rest.

:func:`embed_images` is the front half of the pipeline as one call (discover, build the
encoder, open its store, embed); :func:`embed_records` is the store-aware loop itself.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..encoders import Encoder, create_encoder
from ..progress import progress_bar
from ._decode import Transform
from ._decode import decoder as _decoder
from .sources import DecodeError, ImageRecord, discover, file_hash, load_image
from .store import EmbeddingStore

__all__ = ["EmbedResult", "embed_records", "embed_images", "open_store", "encode_file", "decode_workers", "Transform"]

# (decoded RGB image, its file's content hash) -> the image to encode (a corruption, an augmented view).


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
    encoder: Encoder | None = None
    store: EmbeddingStore | None = None
    batch_size: int | None = None

    @property
    def images_per_second(self) -> float:
        """Images encoded per second of encoding (cached images excluded)."""
        return self.n_encoded / self.seconds if self.seconds > 0 and self.n_encoded else 0.0

    def timings(self) -> dict:
        """The embed stage's entries of ``run.json``'s ``timings``."""
        return {"embed": self.total_seconds, "embed_images_per_s": self.images_per_second,
                "n_encoded": self.n_encoded, "n_cached": self.n_cached}


def _hash_one(rec: ImageRecord):
    try:
        return file_hash(rec.path), None
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"


def decode_workers(runtime: str) -> int:
    """Decode threads: PIL frees the GIL while decoding and resizing, so threads run truly in parallel.

    An exported runtime already keeps every core busy during a forward pass, so one or two
    threads (decoding the next batch meanwhile) are enough; more would only fight its threads.
    """
    cores = os.cpu_count() or 1
    return max(1, min(4, cores if runtime == "torch" else cores // 2 or 1))


def _hash_all(records: list[ImageRecord], pool, progress: bool) -> tuple[list[str | None], list[dict]]:
    """Content hash of every record (``None`` and a skip reason when the file cannot be read)."""
    hashes: list[str | None] = [None] * len(records)
    skipped: list[dict] = []
    with progress_bar(len(records), "hashing", progress, "file") as adv:
        for i, (h, err) in enumerate(pool.map(_hash_one, records, chunksize=64)):
            hashes[i] = h
            if err:
                skipped.append({"path": records[i].path, "reason": err})
            adv()
    return hashes, skipped


def _cached(hashes: list[str | None], store: EmbeddingStore | None) -> tuple[dict[str, np.ndarray], list[int], int]:
    """Vectors already in the store, the first index of each distinct hash to embed, and the hit count."""
    vectors: dict[str, np.ndarray] = {}
    n_cached = 0
    if store is not None:
        present = [h for h in hashes if h is not None]
        found, vecs = store.get(present)
        vectors.update(zip([h for h, f in zip(present, found) if f], vecs))
        n_cached = int(found.sum())
    todo: list[int] = []
    seen: set[str] = set()
    for i, h in enumerate(hashes):
        if h is None or h in vectors or h in seen:
            continue
        seen.add(h)  # identical files are decoded and encoded once
        todo.append(i)
    return vectors, todo, n_cached


class _Flusher:
    """Buffers new vectors and writes them to the store in chunks (each chunk is one atomic part)."""

    def __init__(self, store: EmbeddingStore | None, every: int):
        self.store, self.every = store, every
        self.hashes: list[str] = []
        self.vectors: list[np.ndarray] = []

    def add(self, hashes: list[str], vectors: np.ndarray) -> None:
        self.vectors.append(vectors)
        self.hashes.extend(hashes)
        if len(self.hashes) >= self.every:
            self.flush()

    def flush(self) -> None:
        # An interrupt between the two appends above leaves them unequal: never write a half batch.
        complete = sum(len(v) for v in self.vectors) == len(self.hashes)
        if self.store is not None and self.hashes and complete:
            self.store.add(self.hashes, np.concatenate(self.vectors))
        self.hashes, self.vectors = [], []


def _encode_missing(records, hashes, todo, encoder, pool, flusher: _Flusher, vectors: dict, batch_size: int,
                    progress: bool, transform: Transform | None = None) -> tuple[dict[str, str], int]:
    """Decode and encode the ``todo`` records batch by batch; returns ``(bad hash -> reason, n encoded)``."""
    bad: dict[str, str] = {}
    n_encoded = 0
    decode = _decoder(encoder, transform)
    batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]
    with progress_bar(len(todo), f"embedding ({encoder.name})", progress) as adv:
        # Decode the next batch in threads while the model runs on the current one.
        nxt = pool.map(decode, [records[i] for i in batches[0]], [hashes[i] for i in batches[0]]) if batches else None
        try:
            for b, batch in enumerate(batches):
                decoded = list(nxt)
                nxt = (pool.map(decode, [records[i] for i in batches[b + 1]], [hashes[i] for i in batches[b + 1]])
                       if b + 1 < len(batches) else None)
                imgs, ok = [], []
                for i, (img, err) in zip(batch, decoded):
                    if img is None:
                        bad[hashes[i]] = err
                    else:
                        imgs.append(img)
                        ok.append(i)
                if imgs:
                    emb = encoder.encode_images(imgs)
                    vectors.update(zip((hashes[i] for i in ok), emb))
                    flusher.add([hashes[i] for i in ok], emb)
                    n_encoded += len(ok)
                adv(len(batch))
        finally:
            # Interrupted (Ctrl-C) or the encoder failed: keep the batches already encoded so a
            # re-run resumes from here (buffered rows are whole batches; never a half one).
            flusher.flush()
    return bad, n_encoded


def embed_records(records: Sequence[ImageRecord], encoder: Encoder, store: EmbeddingStore | None = None,
                  batch_size: int | None = None, flush_every: int = 512, workers: int | None = None,
                  progress: bool = True, engine: str = "local", ray_address: str | None = None,
                  source=None, transform: Transform | None = None,
                  source_kwargs: dict | None = None) -> EmbedResult:
    """Embed ``records`` with ``encoder``, reading and filling ``store`` when given.

    Files that cannot be read or decoded are skipped and reported, never fatal. New vectors
    are flushed to the store every ``flush_every`` images, so a killed run resumes from there.

    Args:
        records: Images to embed.
        encoder: Any :class:`~imgclust.encoders.Encoder`.
        store: Cache for this encoder's fingerprint, or ``None`` for no caching.
        batch_size: Images per forward pass (default: the encoder's, 64 on CPU, 256 on CUDA).
        flush_every: Images between store writes.
        workers: Decoding threads (default: :func:`decode_workers` for the encoder's runtime).
        progress: Show progress bars.
        engine: ``local`` (decode threads + this process's encoder) or ``ray`` (Ray Data actors,
            :mod:`imgclust.pipeline._ray`); both write the same store parts.
        ray_address: Ray cluster to join with ``engine="ray"`` (default: start Ray here).
        source: What Ray actors build the encoder from (name or spec; default the encoder itself).
        transform: Applied to each decoded image before encoding, as ``transform(image, hash)``
            (corruptions, augmented views). Give it a ``store`` of its own (:func:`open_store`'s
            ``variant``): the store is keyed by the file's hash, not by the transformed pixels.
        source_kwargs: How Ray actors build ``source`` (:func:`~imgclust.encoders.create_encoder`'s
            device, runtime, cache_dir; default the encoder's device).
    """
    _check_engine(engine)
    t0 = time.perf_counter()
    workers = workers or decode_workers(getattr(encoder, "runtime", "torch"))
    batch_size = batch_size or getattr(encoder, "default_batch_size", 64)
    records = list(records)
    with ThreadPoolExecutor(workers) as pool:
        hashes, skipped = _hash_all(records, pool, progress)
        vectors, todo, n_cached = _cached(hashes, store)
        t_enc = time.perf_counter()
        if not todo:
            bad, n_encoded = {}, 0
        elif engine == "ray":
            from ._ray import encode_missing_ray

            if transform is not None:
                from ..errors import ImgclustError

                raise ImgclustError("the ray engine embeds files as they are; transformed images "
                                    "(robustness, --augment) use the local engine")
            bad, n_encoded = encode_missing_ray(records, hashes, todo, encoder, _Flusher(store, flush_every),
                                                vectors, batch_size, progress, source=source,
                                                build=source_kwargs, address=ray_address)
        else:
            bad, n_encoded = _encode_missing(records, hashes, todo, encoder, pool, _Flusher(store, flush_every),
                                             vectors, batch_size, progress, transform)
        enc_seconds = time.perf_counter() - t_enc

    kept = []
    for i, h in enumerate(hashes):
        if h in bad:
            skipped.append({"path": records[i].path, "reason": bad[h]})
        elif h is not None and h in vectors:
            kept.append(i)
    dim = encoder.dim or (len(next(iter(vectors.values()))) if vectors else 0)
    emb = (np.stack([vectors[hashes[i]] for i in kept]).astype(np.float32) if kept
           else np.zeros((0, dim), np.float32))
    skipped.sort(key=lambda s: s["path"])
    return EmbedResult(embeddings=emb, records=[records[i] for i in kept], hashes=[hashes[i] for i in kept],
                       skipped=skipped, n_cached=n_cached, n_encoded=n_encoded, seconds=enc_seconds,
                       total_seconds=time.perf_counter() - t0, encoder=encoder, batch_size=batch_size)


def _check_engine(engine: str) -> None:
    from ..errors import ImgclustError, require

    if engine not in ("local", "ray"):
        raise ImgclustError(f"unknown --engine {engine!r}; valid: local, ray")
    if engine == "ray":
        require("ray", extra="ray")  # names `pip install 'imgclust[ray]'` before any work


def open_store(encoder: Encoder, cache_dir: str | os.PathLike | None = None,
               variant: str | None = None, dtype: str = "float32") -> EmbeddingStore:
    """The embedding store of ``encoder``'s fingerprint under ``cache_dir`` (default cache root).

    ``variant`` (e.g. ``gaussian_noise-0.18-seed0``) names a store of transformed images of its
    own, ``<fingerprint>+<variant>``: the same file under another transform never shares a vector.
    ``dtype="float16"`` halves the size of the shards it writes (reads are float32 either way).
    """
    fp = encoder.fingerprint() if not variant else f"{encoder.fingerprint()}+{_safe_variant(variant)}"
    return EmbeddingStore(cache_dir, fp, encoder.dim, dtype=dtype,
                          spec={"name": encoder.name, "weights": encoder.spec.weights, "dim": encoder.dim,
                                "variant": variant})


def _safe_variant(variant: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in variant)[:80]


def embed_images(inputs: str | Sequence[str] | Sequence[ImageRecord], encoder="efficientnet-lite0",
                 labels: str | None = None, device: str = "auto", runtime: str = "auto", batch_size: int | None = None,
                 cache_dir: str | os.PathLike | None = None, cache: bool = True,
                 progress: bool = False, dtype: str = "float32", engine: str = "local",
                 ray_address: str | None = None) -> EmbedResult:
    """Discover and embed images through the cache (the pipeline up to the store; CLI: ``imgclust embed``).

    Args:
        inputs: Files, folders, globs, manifests, or a list of :class:`ImageRecord`.
        encoder: Registry name, ``hf:<id or dir>``, or an :class:`~imgclust.encoders.Encoder`.
        labels: ``folder`` or ``manifest`` (ignored for records).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        runtime: ``auto``, ``torch``, ``onnx`` or ``openvino`` (see :func:`~imgclust.encoders.create_encoder`).
        batch_size: Images per forward pass (default: 64 on CPU, 256 on CUDA).
        cache_dir: Embedding cache root (also holds the one-time ONNX export).
        cache: Read and fill the cache.
        progress: Show progress bars.
        dtype: ``float32`` or ``float16``: how the store's shards keep vectors.
        engine: ``local`` or ``ray`` (Ray Data actors that each build the encoder once).
        ray_address: Ray cluster to join (``engine="ray"``; default: start Ray on this machine).

    Returns:
        An :class:`EmbedResult` whose ``encoder`` is the encoder used and ``store`` the cache.
    """
    _check_engine(engine)  # before discovery: a missing Ray is the first thing to hear
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], ImageRecord):
        records = list(inputs)
    else:
        records = discover(inputs, labels=labels)
    enc = create_encoder(encoder, device=device, runtime=runtime, cache_dir=cache_dir)
    store = open_store(enc, cache_dir, dtype=dtype) if cache else None
    result = embed_records(records, enc, store=store, batch_size=batch_size, progress=progress, engine=engine,
                           ray_address=ray_address, source=encoder if isinstance(encoder, str) else None,
                           source_kwargs={"device": enc.device, "runtime": getattr(enc, "runtime", runtime),
                                          "cache_dir": None if cache_dir is None else str(cache_dir)})
    result.store = store
    return result


def encode_file(encoder: Encoder, image: str | os.PathLike) -> np.ndarray:
    """One image file's vector, or an :class:`ImgclustError` line saying why it cannot be used."""
    from ..errors import ImgclustError

    try:
        img = load_image(str(image))
    except DecodeError as exc:
        raise ImgclustError(f"cannot use {image} as a query: {exc.reason}") from None
    except FileNotFoundError:
        raise ImgclustError(f"query image not found: {image}") from None
    return encoder.encode_images([img])[0]
