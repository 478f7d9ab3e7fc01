"""Per-cluster summaries computed as data (prototypes, outliers, sizes, cohesion)."""

from __future__ import annotations

import numpy as np

__all__ = ["cluster_examples", "cluster_stats"]


def cluster_examples(labels: np.ndarray, distances: np.ndarray, n: int = 8, outliers: bool = False
                     ) -> dict[int, list[int]]:
    """Indices of each cluster's members ordered by distance to its centre.

    Args:
        labels: Cluster id per image (-1 = noise, listed under -1 in the given order).
        distances: Distance of each image to its cluster centre.
        n: Members per cluster (``None`` = all).
        outliers: Farthest first instead of closest first.
    """
    labels = np.asarray(labels)
    d = np.nan_to_num(np.asarray(distances, np.float64), nan=np.inf)
    out: dict[int, list[int]] = {}
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        order = idx[np.argsort(-d[idx] if outliers else d[idx], kind="stable")]
        out[int(c)] = order[:n].tolist() if n else order.tolist()
    return out


def cluster_stats(X: np.ndarray, labels: np.ndarray, distances: np.ndarray) -> list[dict]:
    """Size, mean distance to centre and mean cosine similarity to the centroid, per cluster."""
    X = np.asarray(X, np.float32)
    labels = np.asarray(labels)
    distances = np.asarray(distances, np.float64)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    rows = []
    for c in sorted(set(labels.tolist())):
        m = labels == c
        cen = Xn[m].mean(0)
        cen /= max(np.linalg.norm(cen), 1e-12)
        rows.append({"cluster": int(c), "size": int(m.sum()),
                     "mean_distance": float(np.nanmean(distances[m])) if np.isfinite(distances[m]).any() else None,
                     "cohesion": float((Xn[m] @ cen).mean())})
    return rows
