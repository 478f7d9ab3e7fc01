"""Clustering scores: internal (no labels) and external (against known labels)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["internal_scores", "external_scores", "cluster_accuracy", "confusion", "neighbor_accuracy",
           "aggregate_runs"]

# Rows per float64 batch when internal scores stream over a large input (16,384 x 512 x 8 B = 64 MB).
SCORE_BATCH = 16_384


def internal_scores(X: np.ndarray, labels: np.ndarray, *, sample_size: int | None = 10_000,
                    random_state: int = 0, max_rows: int | None = 200_000) -> dict[str, float | None]:
    """Silhouette (cosine on normalised rows = euclidean), Calinski-Harabasz, Davies-Bouldin.

    Noise points (label -1) are left out. Scores are ``None`` when fewer than two clusters
    remain. Silhouette is estimated on ``sample_size`` points for large inputs (it is O(N^2)).
    Past ``max_rows`` rows, Calinski-Harabasz and Davies-Bouldin are computed exactly over all
    rows in streamed float64 batches (:func:`_streamed_ch_db`; a memory-mapped million is never
    copied whole) and silhouette on ``sample_size`` rows drawn from them.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    labels = np.asarray(labels)
    rows = np.flatnonzero(labels >= 0)
    if max_rows and len(rows) > max_rows:
        return _large_internal(X, labels, rows, sample_size or 10_000, random_state)
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


def _large_internal(X, labels: np.ndarray, rows: np.ndarray, sample_size: int, random_state: int) -> dict:
    from sklearn.metrics import silhouette_score

    n_clusters = len(np.unique(labels[rows]))
    if n_clusters < 2 or n_clusters >= len(rows):
        return {"silhouette": None, "calinski_harabasz": None, "davies_bouldin": None}
    ch, db = _streamed_ch_db(X, labels, rows)
    sil = None
    picked = np.sort(np.random.default_rng(random_state).choice(rows, min(sample_size, len(rows)), replace=False))
    if 2 <= len(np.unique(labels[picked])) < len(picked):
        sil = float(silhouette_score(np.asarray(X[picked], np.float32), labels[picked], random_state=random_state))
    return {"silhouette": sil, "calinski_harabasz": ch, "davies_bouldin": db}


def _streamed_ch_db(X, labels: np.ndarray, rows: np.ndarray, batch: int | None = None) -> tuple[float, float]:
    """Calinski-Harabasz and Davies-Bouldin (scikit-learn's definitions) of ``rows``, two streamed passes."""
    from scipy import sparse

    batch = batch or SCORE_BATCH

    ids, inv = np.unique(labels[rows], return_inverse=True)
    k, n = len(ids), len(rows)
    sums = np.zeros((k, X.shape[1]), np.float64)
    for s in range(0, n, batch):
        lab = inv[s:s + batch]
        onehot = sparse.csr_matrix((np.ones(len(lab)), (lab, np.arange(len(lab)))), shape=(k, len(lab)))
        sums += onehot @ np.asarray(X[rows[s:s + batch]], np.float64)
    counts = np.bincount(inv, minlength=k).astype(np.float64)
    cent = sums / counts[:, None]
    mean = sums.sum(0) / n
    intra_sq, intra_d = 0.0, np.zeros(k)
    for s in range(0, n, batch):
        d = np.linalg.norm(np.asarray(X[rows[s:s + batch]], np.float64) - cent[inv[s:s + batch]], axis=1)
        intra_sq += float((d ** 2).sum())
        intra_d += np.bincount(inv[s:s + batch], weights=d, minlength=k)
    extra = float((counts * ((cent - mean) ** 2).sum(1)).sum())
    ch = 1.0 if intra_sq == 0 else extra * (n - k) / (intra_sq * (k - 1))
    intra = intra_d / counts
    cd = np.sqrt(np.maximum((cent ** 2).sum(1)[:, None] + (cent ** 2).sum(1)[None] - 2 * cent @ cent.T, 0))
    if np.allclose(intra, 0) or np.allclose(cd, 0):
        return float(ch), 0.0
    np.fill_diagonal(cd, np.inf)
    cd[cd == 0] = np.inf
    return float(ch), float(np.max((intra[:, None] + intra[None]) / cd, axis=1).mean())


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
