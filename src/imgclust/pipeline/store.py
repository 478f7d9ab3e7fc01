"""Embedding cache: Parquet files per encoder fingerprint, rows keyed by file content hash.

Layout: ``<root>/<fingerprint>/part-*.parquet`` (columns ``hash``, ``vector``) plus
``spec.json``. Each flush writes a new part to a temporary name and renames it into place,
so a killed run leaves only complete parts: nothing is lost but the last unflushed chunk,
and nothing is duplicated (rows are de-duplicated by hash on load). Many small parts are
compacted into one, again atomically.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from .._io import atomic_write_text, default_cache_dir, tmp_name

__all__ = ["EmbeddingStore", "default_cache_dir"]


class EmbeddingStore:
    """Content-addressed embedding cache for one encoder fingerprint.

    Args:
        root: Cache root (default :func:`default_cache_dir`).
        fingerprint: Encoder fingerprint (weights + preprocessing).
        dim: Embedding dimension.
        spec: Optional JSON-able description written once to ``spec.json``.
        compact_every: Compact when this many parts exist.
    """

    def __init__(self, root: str | os.PathLike | None, fingerprint: str, dim: int, spec: dict | None = None,
                 compact_every: int = 32):
        self.dir = Path(root or default_cache_dir()) / "embeddings" / fingerprint
        self.dim = int(dim)
        self.compact_every = compact_every
        self.dir.mkdir(parents=True, exist_ok=True)
        if spec is not None and not (self.dir / "spec.json").exists():
            atomic_write_text(self.dir / "spec.json", json.dumps(spec, indent=2, default=str))
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, self.dim), np.float32)
        self._load()

    # -- reading -----------------------------------------------------------------------
    def _parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def _load(self) -> None:
        import pyarrow.parquet as pq

        hashes: list[str] = []
        blocks: list[np.ndarray] = []
        for part in self._parts():
            try:
                table = pq.read_table(part)
            except Exception:  # a foreign or damaged file: ignore it rather than lose the cache
                continue
            if len(table) == 0:  # reshape(0, -1) below would raise and make the whole cache unreadable
                continue
            vec = table.column("vector").combine_chunks()
            arr = vec.values.to_numpy(zero_copy_only=False).reshape(len(table), -1).astype(np.float32, copy=False)
            if arr.shape[1] != self.dim:
                continue
            hashes.extend(table.column("hash").to_pylist())
            blocks.append(arr)
        index: dict[str, int] = {}
        keep: list[int] = []
        for i, h in enumerate(hashes):
            if h not in index:
                index[h] = len(keep)
                keep.append(i)
        allv = np.concatenate(blocks) if blocks else np.zeros((0, self.dim), np.float32)
        self._vectors = allv[keep] if len(keep) != len(allv) else allv
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, h: str) -> bool:
        return h in self._index

    def get(self, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(found_mask, vectors)``: vectors for the found hashes, in the given order."""
        rows = np.array([self._index.get(h, -1) for h in hashes], dtype=np.int64)
        found = rows >= 0
        return found, self._vectors[rows[found]]

    # -- writing -----------------------------------------------------------------------
    def add(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Persist new rows as one atomic part, then make them visible in memory."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        vectors = np.asarray(vectors, np.float32)
        new = [i for i, h in enumerate(hashes) if h not in self._index]
        # Keep only the first occurrence of a hash within this batch too.
        seen: set[str] = set()
        new = [i for i in new if not (hashes[i] in seen or seen.add(hashes[i]))]
        if not new:
            return
        hs = [hashes[i] for i in new]
        vs = vectors[new]
        table = pa.table({
            "hash": pa.array(hs, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vs.reshape(-1), pa.float32()), self.dim),
        })
        name = self.dir / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        tmp = tmp_name(name)
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, name)
        base = len(self._vectors)
        self._vectors = np.concatenate([self._vectors, vs])
        for j, h in enumerate(hs):
            self._index[h] = base + j
        if len(self._parts()) >= self.compact_every:
            self.compact()

    def compact(self) -> None:
        """Merge all parts into one; crash-safe (old parts are removed only after the rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        old = self._parts()
        if len(old) <= 1:
            return
        # Another process may have added parts since we loaded: re-read them, or deleting ``old``
        # below would lose their rows.
        self._load()
        hashes = [None] * len(self._index)
        for h, i in self._index.items():
            hashes[i] = h
        table = pa.table({
            "hash": pa.array(hashes, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(self._vectors.reshape(-1), pa.float32()), self.dim),
        })
        # "part-0..." sorts first, so a crash before the deletes only leaves duplicates that _load drops.
        name = self.dir / f"part-{0:020d}-{uuid.uuid4().hex[:6]}.parquet"
        tmp = tmp_name(name)
        pq.write_table(table, tmp)
        os.replace(tmp, name)
        for p in old:
            if p != name:
                p.unlink(missing_ok=True)

    def clean_temp(self) -> None:
        """Remove temp files a killed writer left behind."""
        for p in self.dir.glob(".*.tmp"):
            p.unlink(missing_ok=True)
