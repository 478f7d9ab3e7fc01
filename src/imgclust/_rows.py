"""Rows of several memory-mapped shards seen as one (N, D) float32 array, without copying them.

A store filled in many flushes holds its vectors in many ``.npy`` shards; a run over the whole
store would otherwise gather every row into one new float32 array (4 bytes x N x D: 2 GB at
1M x 512). :class:`ShardRows` is what :meth:`~imgclust.pipeline.store.EmbeddingStore.vectors`
and a referenced run directory return past :data:`~imgclust.limits.RUN_REF_ROWS` rows: it
supports what the large-N paths use (``len``, ``shape``, ``dtype``, slices, index and boolean
arrays, ``X[rows, cols]``) and gathers only the rows asked for. ``np.asarray`` still works and
makes the full copy, for code that needs one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ShardRows", "take_rows", "is_lazy"]


def take_rows(blocks: list[np.ndarray], starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows (global numbering over the concatenated ``blocks``) as one float32 array, in the given order."""
    rows = np.asarray(rows, np.int64)
    dim = blocks[0].shape[1] if blocks else 0
    out = np.empty((len(rows), dim), np.float32)
    if not len(rows):
        return out
    which = np.searchsorted(starts, rows, side="right") - 1
    for b in np.unique(which):
        sel = np.flatnonzero(which == b)
        local = rows[sel] - starts[b]
        order = np.argsort(local, kind="stable")  # sorted reads are sequential on a memory map
        out[sel[order]] = blocks[b][local[order]]
    return out


class ShardRows:
    """A lazy (N, D) float32 view of ``rows`` (global ids) over ``blocks`` (memory maps, row starts ``starts``)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, blocks: list[np.ndarray], starts: np.ndarray, rows: np.ndarray):
        self.blocks, self.starts = list(blocks), np.asarray(starts, np.int64)
        self.rows = np.asarray(rows, np.int64)
        self.shape = (len(self.rows), int(blocks[0].shape[1]) if blocks else 0)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, *rest = key
            return self[first][(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            return take_rows(self.blocks, self.starts, self.rows[[key]])[0]
        if isinstance(key, slice):
            return take_rows(self.blocks, self.starts, self.rows[key])
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return take_rows(self.blocks, self.starts, self.rows[key])

    def batches(self, batch: int):
        """``(start, float32 rows)`` of consecutive batches: the way to stream every row."""
        for s in range(0, len(self), batch):
            yield s, self[s:s + batch]

    def __array__(self, dtype=None, copy=None):
        out = take_rows(self.blocks, self.starts, self.rows)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ShardRows(shape={self.shape}, shards={len(self.blocks)})"


def is_lazy(X) -> bool:
    """Whether ``X`` is a :class:`ShardRows` (to be read batch by batch, never converted whole)."""
    return isinstance(X, ShardRows)
