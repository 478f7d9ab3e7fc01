"""The large-N paths of the classic clusterers: sample, train, then assign every row in batches.

Inputs may be memory maps (the store's shards): rows are read batch by batch and the only
full-size arrays made are the labels and distances (a few bytes per row).
"""

from __future__ import annotations

import numpy as np

from ..limits import (
    KMEANS_FULL_ROWS,
    KMEANS_LARGE_ITER,
    KMEANS_MAX_POINTS_PER_CENTROID,
    KMEANS_SEED_ROWS,
)

__all__ = ["sample_rows", "assign_batches", "train_kmeans_large", "radius_assign"]


def sample_rows(X, m: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted row ids, float32 rows)`` of ``m`` rows drawn without replacement (all rows when ``m >= N``)."""
    n = len(X)
    if m >= n:
        return np.arange(n), np.ascontiguousarray(X, np.float32)
    idx = np.sort(np.random.default_rng(random_state).choice(n, m, replace=False))
    return idx, np.ascontiguousarray(X[idx], np.float32)  # sorted: sequential reads on a memory map


def assign_batches(X, centers: np.ndarray, k: int = 2, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ``k`` centres of every row, streamed: ``(labels (N, k) int64, squared distances (N, k) float32)``.

    ``batch`` rows at a time (default :data:`~imgclust.limits.ASSIGN_BATCH`).
    """
    import faiss

    from .. import limits

    batch = int(batch or limits.ASSIGN_BATCH)

    centers = np.ascontiguousarray(centers, np.float32)
    k = max(1, min(k, len(centers)))
    index = faiss.IndexFlatL2(centers.shape[1])
    index.add(centers)
    n = len(X)
    labels = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    for s in range(0, n, batch):
        d, lab = index.search(np.ascontiguousarray(X[s:s + batch], np.float32), k)
        labels[s:s + batch], dist[s:s + batch] = lab, np.maximum(d, 0)
    return labels, dist


def train_kmeans_large(X, k: int, *, max_iter: int, spherical: bool, init: str, random_state: int,
                       max_points_per_centroid: int = KMEANS_MAX_POINTS_PER_CENTROID) -> tuple[np.ndarray, int]:
    """Centroids from a training sample: ``(centroids, iterations)``.

    The sample has ``max(k * max_points_per_centroid, KMEANS_FULL_ROWS)`` rows, so it is never
    smaller than what the full-data path would have used. Seeding cost is bounded: k-means++
    (scikit-learn's, O(rows * k * d) with local trials) runs on at most
    :data:`~imgclust.limits.KMEANS_SEED_ROWS` rows and only while ``rows * k <= 2e6``; past
    that faiss's own seeding (a random sample of the training rows) is used, which on a large
    sample is as good and costs nothing.
    """
    import faiss

    _, train = sample_rows(X, max(k * max_points_per_centroid, KMEANS_FULL_ROWS), random_state)
    niter = min(int(max_iter), KMEANS_LARGE_ITER)
    km = faiss.Kmeans(train.shape[1], k, niter=niter, nredo=1, seed=int(random_state) + 1, spherical=spherical,
                      max_points_per_centroid=len(train) // k + 1, min_points_per_centroid=1, verbose=False)
    seed_rows = min(len(train), KMEANS_SEED_ROWS)
    if init == "k-means++" and seed_rows * k <= 2e6:
        from sklearn.cluster import kmeans_plusplus

        init_c, _ = kmeans_plusplus(train[:seed_rows], k, random_state=random_state)
        km.train(train, init_centroids=np.ascontiguousarray(init_c, np.float32))
    else:
        km.train(train)
    return km.centroids.copy(), niter


def radius_assign(X, centers: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate predict for density clusters: nearest centre if within its radius, else noise (-1).

    Returns ``(labels, distance to the nearest centre)``.
    """
    if not len(centers):
        return np.full(len(X), -1, np.int64), np.full(len(X), np.nan, np.float32)
    lab, d2 = assign_batches(X, centers, k=1)
    lab, d = lab[:, 0], np.sqrt(d2[:, 0])
    return np.where(d <= radius[lab], lab, -1).astype(np.int64), d
