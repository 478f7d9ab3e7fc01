"""Stratified row samples: every cluster represented, the rest proportional to cluster size.

Used where a stage cannot afford every row (the 2-D map at large N, the report's points).
"""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_sample"]


def stratified_sample(labels: np.ndarray, cap: int, random_state: int = 0) -> np.ndarray:
    """Sorted row ids of at most ``cap`` rows with every cluster (noise included) represented.

    Each cluster first gets ``min(size, cap // (4 * n_clusters))`` rows (at least one), the
    remaining budget is shared in proportion to size. With more clusters than ``cap``, the
    largest ``cap`` clusters get one row each. All rows when ``len(labels) <= cap``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n <= cap:
        return np.arange(n)
    ids, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(ids) >= cap:
        quota = np.zeros(len(ids), np.int64)
        quota[np.argsort(-counts, kind="stable")[:cap]] = 1
    else:
        quota = np.minimum(counts, max(1, cap // (4 * len(ids))))
        spare = counts - quota
        extra = np.floor((cap - quota.sum()) * spare / max(1, spare.sum())).astype(np.int64)
        quota = quota + np.minimum(extra, spare)
    rng = np.random.default_rng(random_state)
    order = np.argsort(inv, kind="stable")
    groups = np.split(order, np.cumsum(counts)[:-1])
    picked = [rng.choice(g, int(q), replace=False) for g, q in zip(groups, quota) if q]
    return np.sort(np.concatenate(picked))
