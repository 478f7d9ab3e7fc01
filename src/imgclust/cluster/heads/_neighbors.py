"""Neighbour mining for the heads: exact cosine kNN (faiss) and neighbour sampling."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["effective_neighbors", "mine_neighbors", "sample_neighbors"]


def effective_neighbors(n_neighbors: int, n: int, n_clusters: int) -> int:
    """Neighbours actually mined: at most half the average cluster size (and at least 5).

    The papers' 20 (SCAN) or 50 (TEMI) neighbours assume thousands of images per cluster; on a
    few hundred images they would reach far into other clusters.
    """
    cap = max(5, n // (2 * max(int(n_clusters), 1)))
    return int(max(1, min(int(n_neighbors), cap, n - 1)))


def mine_neighbors(X: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of each row's ``k`` most cosine-similar other rows (faiss, exact)."""
    from ...knn import knn

    k = max(1, min(int(k), len(X) - 1))
    idx, _ = knn(X, k)
    return np.ascontiguousarray(idx, dtype=np.int64)


def sample_neighbors(neighbors: torch.Tensor, idx: torch.Tensor, gen: torch.Generator,
                     include_self: bool = False) -> torch.Tensor:
    """One uniformly drawn neighbour of each index in ``idx`` (optionally itself too)."""
    k = neighbors.shape[1]
    if include_self:
        pick = torch.randint(0, k + 1, (len(idx),), generator=gen)
        nb = neighbors[idx, pick.clamp(max=k - 1)]
        return torch.where(pick == k, idx, nb)
    pick = torch.randint(0, k, (len(idx),), generator=gen)
    return neighbors[idx, pick]
