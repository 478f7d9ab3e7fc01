"""Embedding cache: one folder per encoder fingerprint, rows keyed by file content hash.

Layout: ``<root>/embeddings/<fingerprint>/`` holds ``spec.json``, small parquet parts
``part-*.parquet`` (columns ``hash``, ``vector``; one per flush while embedding) and large
memory-mapped shards ``shard-*.npy`` + ``shard-*.hashes.parquet`` (float32, or float16 with
``dtype="float16"``). Each write goes to a temporary name and is renamed into place, so a
killed run leaves only complete files: nothing is lost but the last unflushed chunk, and
nothing is duplicated (rows are de-duplicated by hash on load, first occurrence wins, shards
before parts). Many parts are compacted into one part, or into a shard once they hold
:data:`~imgclust.limits.SHARD_MIN_ROWS` rows. Shards are never read into memory as a whole:
:meth:`EmbeddingStore.get` gathers the requested rows from the memory maps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_text, default_cache_dir
from .._rows import ShardRows
from ..errors import InputError
from ..limits import RUN_REF_ROWS, SHARD_MIN_ROWS
from ._shards import part_files, read_part, read_shard, shard_files, take_rows, write_part, write_shard

__all__ = ["EmbeddingStore", "default_cache_dir"]


class EmbeddingStore:
    """Content-addressed embedding cache for one encoder fingerprint.

    Args:
        root: Cache root (default :func:`default_cache_dir`).
        fingerprint: Encoder fingerprint (weights + preprocessing).
        dim: Embedding dimension.
        spec: Optional JSON-able description written once to ``spec.json``.
        compact_every: Compact when this many parts exist.
        dtype: ``float32`` or ``float16``: how shards store vectors (reads always return float32).
        shard_rows: Adds and compactions of at least this many rows become a memory-mapped shard.
    """

    def __init__(self, root: str | os.PathLike | None, fingerprint: str, dim: int, spec: dict | None = None,
                 compact_every: int = 32, dtype: str = "float32", shard_rows: int = SHARD_MIN_ROWS):
        if dtype not in ("float32", "float16"):
            raise InputError(f"store dtype must be float32 or float16 (got {dtype!r})")
        self.dir = Path(root or default_cache_dir()) / "embeddings" / fingerprint
        self.dim = int(dim)
        self.compact_every = compact_every
        self.dtype = dtype
        self.shard_rows = int(shard_rows)
        self.dir.mkdir(parents=True, exist_ok=True)
        if spec is not None and not (self.dir / "spec.json").exists():
            atomic_write_text(self.dir / "spec.json", json.dumps(spec, indent=2, default=str))
        self._load()

    # -- reading -----------------------------------------------------------------------
    def _parts(self) -> list[Path]:
        return part_files(self.dir)

    def _load(self) -> None:
        """Index every shard (memory-mapped) and part (in memory); first occurrence of a hash wins."""
        blocks: list[np.ndarray] = []
        names: list[str | None] = []  # shard file name per block, None for parquet parts
        hashes: list[str] = []
        for path in shard_files(self.dir):
            got = read_shard(path, self.dim)
            if got is not None:
                hashes.extend(got[0])
                blocks.append(got[1])
                names.append(path.name)
        for path in self._parts():
            got = read_part(path, self.dim)
            if got is not None:
                hashes.extend(got[0])
                blocks.append(got[1])
                names.append(None)
        index: dict[str, int] = {}
        for i, h in enumerate(hashes):
            index.setdefault(h, i)
        self._blocks, self._names, self._index = blocks, names, index
        self._starts = np.cumsum([0] + [len(b) for b in blocks], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, h: str) -> bool:
        return h in self._index

    def _rows(self, hashes) -> np.ndarray:
        return np.fromiter((self._index.get(h, -1) for h in hashes), np.int64, len(hashes))

    def get(self, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(found_mask, vectors)``: float32 vectors for the found hashes, in the given order."""
        rows = self._rows(hashes)
        found = rows >= 0
        return found, take_rows(self._blocks, self._starts, rows[found]) if self._blocks else \
            np.zeros((0, self.dim), np.float32)

    def hashes(self) -> list[str]:
        """Every stored hash, in store order (the row order of :meth:`vectors`)."""
        return list(self._index)

    def vectors(self) -> np.ndarray:
        """All distinct vectors in store order: the memory map itself when the store is one shard.

        From :data:`~imgclust.limits.RUN_REF_ROWS` rows held in several shards, a lazy
        :class:`~imgclust._rows.ShardRows` over them (rows are gathered when indexed), not a copy.
        """
        rows = np.fromiter(self._index.values(), np.int64, len(self._index))
        if len(self._blocks) == 1 and len(rows) == len(self._blocks[0]):
            return self._blocks[0]
        if len(rows) >= RUN_REF_ROWS and all(n is not None for n in self._names):
            return ShardRows(self._blocks, self._starts, rows)  # many shards: a lazy view, not a copy
        return take_rows(self._blocks, self._starts, rows) if len(rows) else np.zeros((0, self.dim), np.float32)

    def locate(self, hashes: list[str]) -> tuple[list[str], np.ndarray] | None:
        """Where rows live on disk: ``(shard file names, (N, 2) [shard, row])``, or ``None``.

        ``None`` when a hash is unknown or still in a parquet part (:meth:`seal` first).
        """
        rows = self._rows(hashes)
        if (rows < 0).any():
            return None
        block = np.searchsorted(self._starts, rows, side="right") - 1
        used = np.unique(block)
        if any(self._names[b] is None for b in used):
            return None
        remap = {int(b): i for i, b in enumerate(used)}
        loc = np.stack([np.array([remap[int(b)] for b in block], np.int64), rows - self._starts[block]], 1)
        return [self._names[b] for b in used], loc

    # -- writing -----------------------------------------------------------------------
    def add(self, hashes: list[str], vectors: np.ndarray) -> None:
        """Persist new rows as one atomic part (a shard when there are many), then make them visible."""
        vectors = np.asarray(vectors)
        new = [i for i, h in enumerate(hashes) if h not in self._index]
        # Keep only the first occurrence of a hash within this batch too.
        seen: set[str] = set()
        new = [i for i in new if not (hashes[i] in seen or seen.add(hashes[i]))]
        if not new:
            return
        hs = [hashes[i] for i in new]
        vs = vectors[new] if len(new) != len(vectors) else vectors
        if len(hs) >= self.shard_rows:
            path = write_shard(self.dir, hs, vs, self.dtype)
            self._append(hs, np.load(path, mmap_mode="r"), path.name)
            return
        write_part(self.dir, hs, vs, self.dim)
        self._append(hs, np.asarray(vs, np.float32), None)
        if len(self._parts()) >= self.compact_every:
            self.compact()

    def _append(self, hashes: list[str], block: np.ndarray, name: str | None) -> None:
        base = int(self._starts[-1])
        self._blocks.append(block)
        self._names.append(name)
        self._starts = np.append(self._starts, base + len(block))
        for j, h in enumerate(hashes):
            self._index.setdefault(h, base + j)

    def compact(self, shard: bool | None = None) -> None:
        """Merge all parquet parts into one part, or into a shard when large (or ``shard=True``).

        Crash-safe: old parts are removed only after the merged file is in place.
        """
        old = self._parts()
        if not old or (len(old) == 1 and not shard):
            return
        # Another process may have added parts since we loaded: re-read them, or deleting ``old``
        # below would lose their rows.
        self._load()
        is_part = np.array([n is None for n in self._names] + [False])
        rows = np.fromiter(self._index.values(), np.int64, len(self._index))
        mask = is_part[np.searchsorted(self._starts, rows, side="right") - 1]
        hashes = [h for h, m in zip(self._index, mask) if m]
        vectors = take_rows(self._blocks, self._starts, rows[mask])
        if hashes and (shard or (shard is None and len(hashes) >= self.shard_rows)):
            write_shard(self.dir, hashes, vectors, self.dtype)
            made = None
        else:
            # "part-0..." sorts first, so a crash before the deletes only leaves duplicates that _load drops.
            made = write_part(self.dir, hashes, vectors, self.dim, name=f"part-{0:020d}-{os.urandom(3).hex()}.parquet")
        for p in old:
            if p != made:
                p.unlink(missing_ok=True)
        self._load()

    def seal(self) -> None:
        """Turn every parquet part into a shard, so :meth:`locate` can reference all rows."""
        self.compact(shard=True)

    def clean_temp(self) -> None:
        """Remove temp files a killed writer left behind, and array files whose shard never completed."""
        for p in self.dir.glob(".*.tmp"):
            p.unlink(missing_ok=True)
        complete = set(shard_files(self.dir))
        for p in self.dir.glob("shard-*.npy"):
            if p not in complete:
                p.unlink(missing_ok=True)
