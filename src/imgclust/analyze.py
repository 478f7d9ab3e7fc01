"""Everything after the store: reduce, cluster (over seeds), score, map, as one function.

:func:`cluster_embeddings` turns an (N, D) matrix of embeddings into a
:class:`~imgclust.rundir.ClusteringResult`. It only chains the stages (:mod:`~imgclust.reduce`,
:mod:`~imgclust.cluster`, :mod:`~imgclust.metrics`); each step below is one small function.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ._rows import is_lazy
from .cluster import make_clusterer, needs_k, sweep_k
from .cluster._scale import assign_batches
from .cluster.registry import takes_param
from .cluster.sweep import check_criterion
from .errors import ImgclustError
from .limits import ASSIGN_BATCH, MAP_FIT_ROWS, check_size
from .metrics import aggregate_runs, confusion, external_scores, internal_scores, neighbor_accuracy
from .pipeline.sources import ImageRecord
from .reduce import REDUCERS, Reducer
from .rundir import ClusteringResult
from .sampling import stratified_sample

__all__ = ["cluster_embeddings", "validate_options", "check_k", "reduce_spaces", "takes_views"]

# Methods cheap enough to sweep k with themselves; others sweep with k-means.
_SWEEPABLE = {"kmeans", "kmedoids", "agglomerative"}


def validate_options(method, reduce: str, map: str) -> None:
    """Fail on a bad method or reducer name before spending minutes on embedding."""
    needs_k(method)  # raises ImgclustError listing the valid methods
    for opt, value, valid in (("--reduce", reduce, REDUCERS), ("--map", map, REDUCERS[1:] + ("auto",))):
        if value not in valid:
            raise ImgclustError(f"unknown {opt} {value!r}; valid: {', '.join(valid)}")


def check_k(method, k, n: int, name: str) -> tuple[bool, int | str | None]:
    """``(takes_k, k)``: whether the method takes k, and k validated against ``n`` images."""
    takes_k = needs_k(method)
    if isinstance(method, str):
        check_size(method, n)  # the O(N^2) methods refuse large inputs before any work
    if not takes_k:
        return False, k
    if k is None:
        raise ImgclustError(f"method {name} needs --k N or --k auto")
    if k == "auto":
        return True, k
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise ImgclustError(f"--k must be a number or 'auto' (got {k!r})") from None
    if k < 2:
        raise ImgclustError(f"k must be at least 2 (got {k})")
    if k > n:
        raise ImgclustError(f"k={k} is larger than the number of images ({n})")
    return True, k


def reduce_spaces(X0: np.ndarray, spaces, reduce, n_components: int, random_state: int):
    """The clustering input: each encoder's block reduced on its own, side by side; and the block widths."""
    if spaces is None or len(spaces) < 2:
        X = X0 if reduce in (None, "none") else Reducer(reduce, n_components=n_components,
                                                        random_state=random_state).fit_transform(X0)
        return X, None
    if sum(spaces) != X0.shape[1]:
        raise ImgclustError(f"spaces {list(spaces)} do not add up to the embedding width {X0.shape[1]}")
    edges = np.cumsum([0, *spaces])
    blocks = [X0[:, a:b] for a, b in zip(edges[:-1], edges[1:])]
    if reduce not in (None, "none"):
        blocks = [Reducer(reduce, n_components=n_components, random_state=random_state).fit_transform(b)
                  for b in blocks]
    return np.hstack(blocks).astype(np.float32), [int(b.shape[1]) for b in blocks]


def _true_labels(records: Sequence[ImageRecord]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mask, labels)`` of the labelled records, or ``None`` when no record has a label."""
    mask = np.array([r.label is not None for r in records])
    if not mask.any():
        return None
    return mask, np.asarray([str(r.label) for r in records if r.label is not None])


def _estimator(method, k, takes_k: bool, seed: int, progress: bool, params: dict):
    """A fresh estimator for one seed: by name through the registry, or a clone of the given one."""
    if isinstance(method, str):
        return make_clusterer(method, n_clusters=k if takes_k else None, random_state=seed,
                              progress=progress, **params)
    from sklearn.base import clone

    est = clone(method)
    return est.set_params(random_state=seed) if "random_state" in est.get_params() else est


def takes_views(est) -> bool:
    """Whether ``est.fit`` accepts ``views=`` (embedded augmented views: SCAN, TEMI)."""
    import inspect

    try:
        return "views" in inspect.signature(est.fit).parameters
    except (TypeError, ValueError):
        return False


def _reduced_views(reducer, X: np.ndarray, views, view_index) -> np.ndarray | None:
    """The views in the clustering space: rows of ``X`` (``view_index``) or ``views`` through the reducer."""
    if view_index is not None:
        return X[np.asarray(view_index, np.int64)]
    if views is None:
        return None
    V = np.asarray(views, np.float32)
    if V.ndim != 3 or len(V) != len(X):
        raise ImgclustError(f"views must have shape (N={len(X)}, V, D); got {V.shape}")
    flat = V.reshape(-1, V.shape[2])
    return (flat if reducer is None else reducer.transform(flat)).reshape(len(V), V.shape[1], -1)


def _reduce(X0, reduce, n_components: int, random_state: int, views, view_index):
    """The clustering input and the views in the same space."""
    reducer = None if reduce in (None, "none") else Reducer(reduce, n_components=n_components,
                                                            random_state=random_state)
    X = X0 if reducer is None else reducer.fit_transform(X0)
    return X, _reduced_views(reducer, X, views, view_index)


def _inputs(X0, spaces, reduce, n_components: int, random_state: int, views, view_index):
    """``(X, block widths, views)``: the clustering input, per encoder block when there are several."""
    if spaces is None:
        X, Vr = _reduce(X0, reduce, n_components, random_state, views, view_index)
        return X, None, Vr
    if views is not None or view_index is not None:
        raise ImgclustError("--augment works with one encoder at a time")
    X, widths = reduce_spaces(X0, spaces, reduce, n_components, random_state)
    return X, widths, None


def _fit_seeds(X, method, k, takes_k, seeds, random_state, params, progress, truth, views=None):
    """Fit once per seed; the first seed's model and labels are the run's, every seed is scored."""
    runs_int, runs_ext = [], []
    model = labels = None
    for s in range(max(1, int(seeds))):
        est = method if (s == 0 and not isinstance(method, str)) else _estimator(
            method, k, takes_k, random_state + s, progress, params)
        if views is not None and takes_views(est):
            est.fit(X, views=views)
        else:
            est.fit(X)
        lab = np.asarray(est.labels_, np.int64)
        if s == 0:
            model, labels = est, lab
        runs_int.append(internal_scores(X, lab, random_state=random_state))
        if truth is not None:
            runs_ext.append(external_scores(truth[1], lab[truth[0]]))
    return model, labels, runs_int, runs_ext


def _map_coords(X0: np.ndarray, coords, map: str, random_state: int, labels=None, X=None) -> np.ndarray:
    """2-D map coordinates: given, the data itself when it is 1-2-D, else the ``map`` reducer.

    Past :data:`~imgclust.limits.MAP_FIT_ROWS` rows the reducer is fitted on a stratified
    sample (every cluster represented) and the other rows are placed beside their nearest
    sampled member of the same cluster (:func:`_place_rest`).
    """
    n = len(X0)
    if coords is None:
        if X0.shape[1] <= 2:
            coords = np.pad(np.asarray(X0, np.float32), ((0, 0), (0, 2 - X0.shape[1])))
        elif n > MAP_FIT_ROWS and labels is not None:
            rows = stratified_sample(labels, MAP_FIT_ROWS, random_state)
            fitted = Reducer(map, n_components=2, random_state=random_state).fit_transform(
                np.asarray(X0[rows], np.float32))
            coords = _place_rest(X if X is not None else X0, labels, rows, np.asarray(fitted, np.float32),
                                 random_state)
        else:
            coords = Reducer(map, n_components=2, random_state=random_state).fit_transform(X0)
    coords = np.asarray(coords, np.float32).reshape(n, -1)
    if coords.shape[1] < 2:  # a 1-D map (e.g. 2 images) still needs x and y
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords


def _place_rest(X, labels: np.ndarray, rows: np.ndarray, fitted: np.ndarray, random_state: int) -> np.ndarray:
    """Map coordinates of every row: sampled rows as fitted, others at their nearest sampled cluster-mate.

    A small jitter (0.5% of the map's extent) keeps placed rows from hiding exactly behind
    their anchor. Cost: N x (sampled rows per cluster) distances, cluster by cluster.
    """
    coords = np.empty((len(labels), 2), np.float32)
    coords[rows] = fitted
    is_sampled = np.zeros(len(labels), bool)
    is_sampled[rows] = True
    spread = 0.005 * (fitted.max(0) - fitted.min(0) + 1e-12)
    rng = np.random.default_rng(random_state)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        anchors, rest = members[is_sampled[members]], members[~is_sampled[members]]
        if not len(rest):
            continue
        A = np.asarray(X[anchors], np.float32)
        a2 = (A ** 2).sum(1)
        for s in range(0, len(rest), ASSIGN_BATCH):
            R = np.asarray(X[rest[s:s + ASSIGN_BATCH]], np.float32)
            near = (a2[None, :] - 2 * R @ A.T).argmin(1)
            coords[rest[s:s + ASSIGN_BATCH]] = coords[anchors[near]] + rng.normal(0, 1, (len(R), 2)) * spread
    return coords


def centers_of(X: np.ndarray, labels: np.ndarray, model) -> np.ndarray:
    """Cluster centres in ``X``'s space: the model's own when it has them, else member means."""
    ids = sorted(set(labels.tolist()) - {-1})
    k = max(ids) + 1 if ids else 0
    given = getattr(model, "cluster_centers_", None)
    if given is not None and len(given) == k and np.shape(given)[1] == X.shape[1]:
        return np.asarray(given, np.float32)
    centers = np.zeros((k, X.shape[1]), np.float32)
    for c in ids:
        centers[c] = X[labels == c].mean(0)
    return centers


def distances_and_confidence(X: np.ndarray, labels: np.ndarray, centers: np.ndarray, model) -> tuple:
    """Distance of each point to its centre, and a confidence: 1 - d1/d2, or the head's max probability.

    Large inputs are streamed (faiss, two nearest centres per row); a k-means fitted on the
    large-N path already knows both distances (``nearest_sq_distances_``) and is not searched again.
    """
    n = len(X)
    dist = np.full(n, np.nan, np.float32)
    conf = np.full(n, np.nan, np.float32)
    if len(centers):
        d2 = getattr(model, "nearest_sq_distances_", None)
        if d2 is not None and len(d2) == n and np.array_equal(getattr(model, "labels_", None), labels):
            two = np.sqrt(d2)
        elif n * len(centers) < 5e6:
            d = np.sqrt(np.maximum(((X[:, None, :] - centers[None]) ** 2).sum(-1), 0))
            ok = (labels >= 0) & (labels < len(centers))
            dist[ok] = d[ok, labels[ok]]
            two = np.sort(d, axis=1)[:, :2]
        else:
            two = np.sqrt(assign_batches(X, centers, k=2)[1])
        if d2 is not None or n * len(centers) >= 5e6:
            dist = _own_distance(X, labels, centers)
        if two.shape[1] > 1:
            conf = (1.0 - two[:, 0] / np.maximum(two[:, 1], 1e-12)).astype(np.float32)
    proba = getattr(model, "probabilities_", None)
    if proba is not None:
        proba = np.asarray(proba)
        conf = (proba.max(1) if proba.ndim == 2 else proba).astype(np.float32)
    conf[labels < 0] = 0.0
    return dist, conf


def _own_distance(X, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row to its own cluster's centre (NaN for noise), in batches."""
    dist = np.full(len(X), np.nan, np.float32)
    for s in range(0, len(X), ASSIGN_BATCH):
        lab = labels[s:s + ASSIGN_BATCH]
        ok = (lab >= 0) & (lab < len(centers))
        R = np.asarray(X[s:s + ASSIGN_BATCH], np.float32)
        dist[s:s + ASSIGN_BATCH][ok] = np.linalg.norm(R[ok] - centers[lab[ok]], axis=1)
    return dist


def _training_summary(model, method_name: str) -> dict | None:
    """Loss curve of a trained head (the best head's, when there are several)."""
    history = getattr(model, "loss_history_", None)
    if history is None:
        return None
    hist = np.asarray(history, np.float64)
    best = int(getattr(model, "best_head_", 0) or 0)
    per_epoch = hist[:, best] if hist.ndim == 2 and best < hist.shape[1] else hist.reshape(len(hist), -1).mean(1)
    return {"method": method_name, "best_head": best, "epochs": int(len(hist)),
            "loss_history": [float(v) for v in per_epoch]}


def _metrics(X0, X, labels, reduce, seeds, runs_int, runs_ext, truth, sweep, skipped, model, method_name) -> dict:
    ids, counts = np.unique(labels, return_counts=True)
    metrics: dict[str, Any] = {
        "n_images": len(X0),
        "n_clusters": int(len(set(labels.tolist()) - {-1})),
        "n_noise": int((labels == -1).sum()),
        "skipped": list(skipped or []),
        "internal": aggregate_runs(runs_int),
        "internal_space": "input" if reduce in (None, "none") else f"{reduce}-{X.shape[1]}",
        "cluster_sizes": {int(c): int(m) for c, m in zip(ids, counts)},
        "seeds": int(max(1, seeds)),
    }
    if truth is not None:
        mask, yt = truth
        ext = aggregate_runs(runs_ext)
        if len(np.unique(yt)) > 1 and len(yt) > 5:
            ext["top5_neighbor_acc"] = neighbor_accuracy(X0[mask], yt, k=min(5, len(yt) - 1))
        metrics["external"] = ext
        table, classes, clusters = confusion(yt, labels[mask])
        metrics["confusion"] = {"classes": classes, "clusters": clusters, "matrix": table.tolist()}
        metrics["n_labelled"] = int(mask.sum())
    if sweep is not None:
        metrics["k_sweep"] = sweep.to_dict()
    training = _training_summary(model, method_name)
    if training is not None:
        metrics["training"] = training
    return metrics


def _auto_k(X, method, k, takes_k: bool, random_state: int, criterion: str):
    """``(sweep, k)``: sweep k and pick it by ``criterion`` when it is ``"auto"``, else ``(None, k)``."""
    if not (takes_k and k == "auto"):
        return None, k
    name = method if isinstance(method, str) and method in _SWEEPABLE else "kmeans"
    sweep = sweep_k(X, name, random_state=random_state, criterion=criterion)
    return sweep, sweep.best_k


def cluster_embeddings(embeddings: np.ndarray, records: Sequence[ImageRecord] | None = None, *,
                       reduce: str = "pca", n_components: int = 50, map: str = "auto",
                       method: str | Any = "kmeans", k: int | str | None = 10, seeds: int = 1,
                       random_state: int = 0, coords: np.ndarray | None = None, method_params: dict | None = None,
                       progress: bool = False, hashes: list[str] | None = None,
                       skipped: list[dict] | None = None, config: dict | None = None,
                       spaces: Sequence[int] | None = None, views: np.ndarray | None = None,
                       view_index: np.ndarray | None = None, columns: dict | None = None,
                       k_criterion: str = "silhouette") -> ClusteringResult:
    """Reduce, cluster and score precomputed embeddings (everything after the store).

    Args:
        embeddings: (N, D) L2-normalised image embeddings.
        records: Matching records (paths, labels, captions); synthetic names when omitted.
        reduce: Reducer for the clustering input: ``none``, ``pca``, ``umap`` or ``tsne``.
        n_components: Clustering input dimension when reducing.
        map: Reducer for the 2-D map (``auto`` = umap if installed, else tsne; or pca, tsne, umap).
        method: Clusterer name (see :data:`imgclust.cluster.CLUSTERERS`) or an estimator.
        k: Number of clusters, ``"auto"`` to sweep and pick by ``k_criterion``, or ``None`` for methods
            that find their own (HDBSCAN).
        seeds: Repeat clustering with this many seeds; scores get ``_std``.
        random_state: Base seed.
        coords: Precomputed 2-D map coordinates (reused by ``cluster --from``).
        method_params: Extra keyword arguments for the clusterer.
        progress: Show progress bars (trained heads).
        hashes: Content hash per row (kept in the table).
        skipped: Files skipped before embedding, reported in ``metrics.json``.
        config: Configuration recorded so far (inputs, encoder...), extended here.
        spaces: Widths of the column blocks of ``embeddings`` that come from different encoders; each
            block is reduced on its own, and methods that take ``spaces`` (TURTLE) get the reduced widths.
        views: (N, V, D) augmented views, reduced like the points, for a ``fit`` taking ``views`` (SCAN, TEMI).
        view_index: Instead of ``views``: (N, V) row indices. columns: extra per-row table columns.
        k_criterion: How ``k="auto"`` picks k (:data:`~imgclust.cluster.K_CRITERIA`: silhouette, stability, gap...).

    Returns:
        A :class:`~imgclust.rundir.ClusteringResult`.
    """
    t0 = time.perf_counter()
    validate_options(method, reduce or "none", map)
    X0 = embeddings if is_lazy(embeddings) else np.asarray(embeddings, np.float32)  # memmap/lazy view: no copy
    n = len(X0)
    if n == 0:
        raise ImgclustError("no images could be embedded (all were skipped)")
    records = list(records) if records is not None else [ImageRecord(f"item-{i}") for i in range(n)]
    method_name = method if isinstance(method, str) else type(method).__name__
    params = dict(method_params or {})
    takes_k, k = check_k(method, k, n, method_name)
    check_criterion(k_criterion)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    X, widths, Vr = _inputs(X0, spaces, reduce, n_components, random_state, views, view_index)
    timings["reduce"] = time.perf_counter() - t
    if widths is not None and isinstance(method, str) and takes_param(method, "spaces"):
        params["spaces"] = widths
    t = time.perf_counter()
    sweep, k = _auto_k(X, method, k, takes_k, random_state, k_criterion)
    if sweep is not None:
        timings["k_sweep"] = time.perf_counter() - t

    t = time.perf_counter()
    truth = _true_labels(records)
    model, labels, runs_int, runs_ext = _fit_seeds(X, method, k, takes_k, seeds, random_state, params, progress,
                                                   truth, Vr)
    timings["cluster"] = time.perf_counter() - t
    t = time.perf_counter()
    coords = _map_coords(X0, coords, map, random_state, labels=labels, X=X)
    timings["map"] = time.perf_counter() - t
    centers = centers_of(X, labels, model)
    dist, conf = distances_and_confidence(X, labels, centers, model)
    metrics = _metrics(X0, X, labels, reduce, seeds, runs_int, runs_ext, truth, sweep, skipped, model, method_name)
    timings["total_after_embedding"] = time.perf_counter() - t0
    cfg = dict(config or {}, **({"spaces": [int(w) for w in spaces]} if spaces is not None else {}))
    cfg.update({"reduce": reduce, "n_components": n_components, "map": map, "method": method_name,
                "k": int(k) if takes_k else None, "k_requested": "auto" if sweep else cfg.get("k_requested", k),
                "seeds": int(max(1, seeds)), "random_state": random_state, "method_params": params})
    cfg.update({"views_used": bool(takes_views(model))} if Vr is not None else {})
    return ClusteringResult(records=records, embeddings=X0, features=X, labels=labels, coords=coords, distances=dist,
                            confidence=conf, centers=centers, metrics=metrics, config=cfg, timings=timings,
                            sweep=sweep, hashes=list(hashes or []), model=model, columns=dict(columns or {}))
