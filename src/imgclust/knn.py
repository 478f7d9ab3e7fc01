"""Cosine k-nearest neighbours with faiss (inner product on L2-normalised rows).

Exact (a flat index) up to :data:`~imgclust.limits.KNN_EXACT_ROWS` rows; above that an
inverted-file index (IVF, ``4 * sqrt(N)`` lists (at most N / 39) trained on a sample, 16 lists probed), which
finds most true neighbours at a small fraction of the cost. Queries run in batches.
"""

from __future__ import annotations

import numpy as np

from .limits import ASSIGN_BATCH, KNN_EXACT_ROWS

__all__ = ["knn", "knn_query", "build_index"]


def build_index(X: np.ndarray, exact: bool | None = None, nprobe: int = 16, random_state: int = 0,
                normalize: bool = False):
    """A faiss inner-product index over ``X``: flat when small or ``exact``, else IVF.

    Rows are assumed normalised, or normalised here batch by batch with ``normalize``. ``X`` may
    be a memory map or the store's lazy view: it is read :data:`~imgclust.limits.ASSIGN_BATCH`
    rows at a time, never copied whole.
    """
    import faiss

    prep = _normalize if normalize else _as_f32
    n, d = X.shape
    if exact or (exact is None and n <= KNN_EXACT_ROWS):
        index = faiss.IndexFlatIP(d)
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants >= 39 training rows per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rows = np.random.default_rng(random_state).choice(n, min(n, 64 * nlist), replace=False)
        index.train(prep(X[np.sort(rows)]))
        index.nprobe = nprobe
    for s in range(0, n, ASSIGN_BATCH):
        index.add(prep(X[s:s + ASSIGN_BATCH]))
    return index


def _index(X: np.ndarray):
    return build_index(X, normalize=True)


def _search(index, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Queries (normalised batch by batch, so ``Q`` may be a memory map) against ``index``."""
    sims = np.empty((len(Q), k), np.float32)
    idx = np.empty((len(Q), k), np.int64)
    for s in range(0, len(Q), ASSIGN_BATCH):
        sims[s:s + ASSIGN_BATCH], idx[s:s + ASSIGN_BATCH] = index.search(_normalize(Q[s:s + ASSIGN_BATCH]), k)
    return sims, idx


def _as_f32(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float32)


def _normalize(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12))


def knn(X: np.ndarray, k: int, *, include_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar rows of ``X`` for every row of ``X``.

    Args:
        X: (N, D) embeddings (normalised here, batch by batch: a memory map is never copied whole).
        k: Neighbours per row (clipped to N - 1 without self).
        include_self: Keep each row as its own first neighbour.

    Returns:
        ``(indices, similarities)``, both (N, k), most similar first.
    """
    n = len(X)
    k = max(1, min(k, n if include_self else n - 1))
    sims, idx = _search(_index(X), X, k + (0 if include_self else 1))  # both read X batch by batch
    if include_self:
        return idx, sims
    # Drop each row's self-match; with duplicates self may not come first, so remove it by id.
    rows = np.arange(n)[:, None]
    mask = idx != rows
    keep = np.where(mask.sum(1, keepdims=True) > k, mask & (np.cumsum(mask, 1) <= k), mask)
    out_i = idx[keep].reshape(n, -1)[:, :k]
    out_s = sims[keep].reshape(n, -1)[:, :k]
    return out_i, out_s


def knn_query(X: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``X`` most cosine-similar to each query: ``(indices, similarities)``."""
    k = max(1, min(k, len(X)))
    sims, idx = _search(_index(X), np.atleast_2d(queries), k)
    return idx, sims
