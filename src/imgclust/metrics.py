"""Clustering scores: internal (no labels) and external (against known labels)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["internal_scores", "external_scores", "cluster_accuracy", "confusion", "neighbor_accuracy",
           "aggregate_runs"]


def internal_scores(X: np.ndarray, labels: np.ndarray, *, sample_size: int | None = 10_000,
                    random_state: int = 0, max_rows: int | None = 200_000) -> dict[str, float | None]:
    """Silhouette (cosine on normalised rows = euclidean), Calinski-Harabasz, Davies-Bouldin.

    Noise points (label -1) are left out. Scores are ``None`` when fewer than two clusters
    remain. Silhouette is estimated on ``sample_size`` points for large inputs (it is O(N^2));
    past ``max_rows`` rows all three are estimated on a uniform sample of ``max_rows`` rows
    (so a memory-mapped million is never copied whole).
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    labels = np.asarray(labels)
    rows = np.flatnonzero(labels >= 0)
    if max_rows and len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, max_rows, replace=False))
    X, labels = np.asarray(X)[rows], labels[rows]
    n_clusters = len(np.unique(labels))
    if n_clusters < 2 or n_clusters >= len(labels):
        return {"silhouette": None, "calinski_harabasz": None, "davies_bouldin": None}
    ss = sample_size if sample_size and len(X) > sample_size else None
    return {
        "silhouette": float(silhouette_score(X, labels, sample_size=ss, random_state=random_state)),
        "calinski_harabasz": float(calinski_harabasz_score(X, labels)),
        "davies_bouldin": float(davies_bouldin_score(X, labels)),
    }


def confusion(y_true: Sequence, y_pred: Sequence) -> tuple[np.ndarray, list, list]:
    """Contingency table: rows are true classes, columns predicted clusters (noise included)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes, ti = np.unique(y_true, return_inverse=True)
    clusters, pi = np.unique(y_pred, return_inverse=True)
    table = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    np.add.at(table, (ti, pi), 1)
    return table, classes.tolist(), clusters.tolist()


def cluster_accuracy(y_true: Sequence, y_pred: Sequence) -> tuple[float, dict]:
    """Best one-to-one match of clusters to classes (Hungarian), and the accuracy it gives.

    Returns:
        ``(acc, mapping)`` with ``mapping`` from cluster id to class. Unmatched clusters (more
        clusters than classes, or noise) count as wrong, as in the clustering literature.
    """
    from scipy.optimize import linear_sum_assignment

    table, classes, clusters = confusion(y_true, y_pred)
    rows, cols = linear_sum_assignment(-table)
    mapping = {clusters[c]: classes[r] for r, c in zip(rows, cols)}
    return float(table[rows, cols].sum() / max(1, table.sum())), mapping


def external_scores(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    """ACC (Hungarian), NMI and ARI of a clustering against known labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    acc, _ = cluster_accuracy(y_true, y_pred)
    return {
        "acc": acc,
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }


def neighbor_accuracy(X: np.ndarray, y_true: Sequence, k: int = 5) -> float:
    """Share of each image's ``k`` nearest neighbours (cosine) that carry its label (SCAN's top-5)."""
    from .knn import knn

    y = np.asarray(y_true)
    idx, _ = knn(X, k)
    return float((y[idx] == y[:, None]).mean())


def aggregate_runs(runs: list[dict]) -> dict:
    """Mean of each numeric score over seeds, plus ``<score>_std`` when there are several."""
    if len(runs) == 1:
        return dict(runs[0])
    out: dict = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if r.get(key) is not None]
        if not vals:
            out[key] = None
            continue
        out[key] = float(np.mean(vals))
        out[f"{key}_std"] = float(np.std(vals))
    return out
