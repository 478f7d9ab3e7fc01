"""Exact cosine k-nearest neighbours with faiss (inner product on L2-normalised rows)."""

from __future__ import annotations

import numpy as np

__all__ = ["knn", "knn_query"]


def _index(X: np.ndarray):
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(X)
    return index


def _normalize(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12))


def knn(X: np.ndarray, k: int, *, include_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar rows of ``X`` for every row of ``X``.

    Args:
        X: (N, D) embeddings (normalised here).
        k: Neighbours per row (clipped to N - 1 without self).
        include_self: Keep each row as its own first neighbour.

    Returns:
        ``(indices, similarities)``, both (N, k), most similar first.
    """
    Xn = _normalize(X)
    n = len(Xn)
    k = max(1, min(k, n if include_self else n - 1))
    sims, idx = _index(Xn).search(Xn, k + (0 if include_self else 1))
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
    Xn = _normalize(X)
    k = max(1, min(k, len(Xn)))
    sims, idx = _index(Xn).search(_normalize(np.atleast_2d(queries)), k)
    return idx, sims
