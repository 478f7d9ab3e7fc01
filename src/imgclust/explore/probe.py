"""Reference points for clustering scores on labelled data.

* :func:`linear_probe`: the supervised upper reference: a logistic regression on the
  L2-normalised embeddings, cross-validated. No clustering method that only sees the
  embeddings should be expected to beat it.
* :func:`kmeans_baseline`: the deep-clustering papers' k-means protocol (several k-means++
  restarts, fit on all images, repeated over seeds), the number a clustering head must beat.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImgclustError

__all__ = ["linear_probe", "kmeans_baseline", "probe_run"]


def _normalize(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ImgclustError(f"X must be a 2-D array (images x dimensions), got shape {X.shape}")
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def linear_probe(X, y, cv: int = 5, random_state: int = 0, C: float = 1.0, max_iter: int = 2000) -> dict:
    """Cross-validated logistic-regression accuracy on L2-normalised embeddings.

    Each fold's held-out predictions are collected (``cross_val_predict`` style), so NMI and
    ARI of the probe are computed on out-of-fold predictions for every image, comparable
    with a clustering's scores on the same images.

    Args:
        X: (N, D) embeddings.
        y: (N,) known labels (any hashable values).
        cv: Number of stratified folds (reduced when the rarest class has fewer images).
        random_state: Seed of the fold shuffling.
        C: Inverse L2 regularisation strength.
        max_iter: Solver iterations.

    Returns:
        ``{"acc", "acc_std", "fold_acc", "nmi", "ari", "cv", "n", "n_classes"}``: mean and std
        of the fold accuracies, and NMI/ARI of the out-of-fold predictions.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    Xn = _normalize(X)
    y = np.asarray(y)
    if len(y) != len(Xn):
        raise ImgclustError(f"X has {len(Xn)} rows but y has {len(y)} labels")
    classes, yi = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ImgclustError("the linear probe needs at least 2 classes")
    folds = int(min(cv, np.bincount(yi).min()))
    if folds < 2:
        raise ImgclustError("the linear probe needs at least 2 images of every class")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    pred = np.empty_like(yi)
    accs = []
    for train, test in skf.split(Xn, yi):
        # Standardising inside the fold keeps the test fold unseen and conditions lbfgs.
        scaler = StandardScaler().fit(Xn[train])
        clf = LogisticRegression(C=C, max_iter=max_iter)
        clf.fit(scaler.transform(Xn[train]), yi[train])
        p = clf.predict(scaler.transform(Xn[test]))
        pred[test] = p
        accs.append(float((p == yi[test]).mean()))
    return {
        "acc": float(np.mean(accs)),
        "acc_std": float(np.std(accs)),
        "fold_acc": accs,
        "nmi": float(normalized_mutual_info_score(yi, pred)),
        "ari": float(adjusted_rand_score(yi, pred)),
        "cv": folds,
        "n": int(len(yi)),
        "n_classes": int(len(classes)),
    }


def kmeans_baseline(X, y, n_clusters: int, n_init: int = 10, seeds: Sequence[int] = (0, 1, 2),
                    spherical: bool = False) -> dict:
    """The papers' k-means protocol: ``n_init`` restarts fit on all images, over several seeds.

    Args:
        X: (N, D) embeddings (L2-normalised here, as in the papers).
        y: (N,) known labels, used for scoring only.
        n_clusters: Number of clusters (usually the number of classes).
        n_init: k-means restarts per seed (best inertia kept).
        seeds: Seeds; one k-means run per seed.
        spherical: Cosine k-means (normalised centroids).

    Returns:
        ``{"acc", "acc_std", "nmi", "nmi_std", "ari", "ari_std", "runs", "n_init", "seeds"}``.
    """
    from ..cluster.classic import KMeans
    from ..metrics import external_scores

    Xn = _normalize(X)
    y = np.asarray(y)
    if len(y) != len(Xn):
        raise ImgclustError(f"X has {len(Xn)} rows but y has {len(y)} labels")
    seeds = list(seeds)
    if not seeds:
        raise ImgclustError("kmeans_baseline needs at least one seed")
    runs = []
    for s in seeds:
        km = KMeans(n_clusters=n_clusters, n_init=n_init, spherical=spherical, random_state=int(s)).fit(Xn)
        runs.append(external_scores(y, km.labels_))
    out: dict = {}
    for key in ("acc", "nmi", "ari"):
        vals = np.asarray([r[key] for r in runs], dtype=np.float64)
        out[key] = float(vals.mean())
        out[f"{key}_std"] = float(vals.std())
    out.update(runs=runs, n_init=int(n_init), seeds=seeds, n_clusters=int(n_clusters))
    return out


def probe_run(run_dir: str | os.PathLike, cv: int = 5, random_state: int = 0, baseline: bool = True,
              report: bool = True) -> dict:
    """Supervised upper reference for a labelled run: a cross-validated linear probe (CLI: ``imgclust probe``).

    Fits logistic regression on the run's embeddings with the known labels (``cv`` folds) and,
    with ``baseline``, the papers' k-means protocol on the same embeddings, so the clustering
    scores can be read against both. Results go to ``metrics.json`` under ``probe``.
    """
    from .._io import atomic_write_json
    from ..rundir import load_run, run_embeddings

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    labels = run["table"].to_pydict().get("label")
    if labels is None or all(v is None for v in labels):
        raise ImgclustError(f"{run_dir} has no labels: run with --labels folder or a manifest with a label column")
    emb = run_embeddings(run)
    mask = np.array([v is not None for v in labels])
    X = emb[mask]
    y = np.asarray([str(v) for v in np.asarray(labels, object)[mask]])
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ImgclustError("the linear probe needs at least two classes")
    folds = int(min(cv, counts.min()))
    if folds < 2:
        raise ImgclustError("the linear probe needs at least two images of every class")
    result = {"linear_probe": linear_probe(X, y, cv=folds, random_state=random_state)}
    result.update({"acc": result["linear_probe"]["acc"], "acc_std": result["linear_probe"]["acc_std"]})
    if baseline:
        result["kmeans_baseline"] = kmeans_baseline(X, y, n_clusters=len(classes))
    metrics = run["metrics"]
    metrics["probe"] = result
    atomic_write_json(run_dir / "metrics.json", metrics)
    if report and (run_dir / "report.html").exists():
        from ..report import build_report

        build_report(run_dir)
    return result
