"""The one place that chains the stages: sources -> encoder -> store -> reducer -> clusterer."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cluster import KSweep, make_clusterer, needs_k, sweep_k
from .embed import EmbedResult, embed_records
from .encoders import create_encoder
from .errors import ImgclustError
from .metrics import confusion, external_scores, internal_scores, neighbor_accuracy, aggregate_runs
from .reduce import Reducer
from .sources import ImageRecord, discover
from .store import EmbeddingStore, atomic_write_bytes, atomic_write_text

__all__ = ["ClusteringResult", "cluster_images", "cluster_embeddings", "embed_images", "load_run", "recluster"]

# Methods cheap enough to sweep k with themselves; others sweep with k-means.
_SWEEPABLE = {"kmeans", "kmedoids", "agglomerative"}


@dataclass
class ClusteringResult:
    """Everything a run produced, as data. ``save`` writes the run directory."""

    records: list[ImageRecord]
    embeddings: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    coords: np.ndarray
    distances: np.ndarray
    confidence: np.ndarray
    centers: np.ndarray
    metrics: dict
    config: dict
    timings: dict = field(default_factory=dict)
    sweep: KSweep | None = None
    hashes: list[str] = field(default_factory=list)
    model: Any = None

    @property
    def n_clusters(self) -> int:
        return int(len(set(self.labels.tolist()) - {-1}))

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    @property
    def true_labels(self) -> list[str | None]:
        return [r.label for r in self.records]

    def table(self):
        """One row per image: path, cluster, x, y, distance, confidence, label, caption, hash."""
        import pyarrow as pa

        cols = {
            "path": pa.array(self.paths, pa.string()),
            "cluster": pa.array(self.labels.astype(np.int64)),
            "x": pa.array(self.coords[:, 0].astype(np.float32)),
            "y": pa.array(self.coords[:, 1].astype(np.float32)),
            "distance": pa.array(self.distances.astype(np.float32)),
            "confidence": pa.array(self.confidence.astype(np.float32)),
        }
        if any(r.label is not None for r in self.records):
            cols["label"] = pa.array(self.true_labels, pa.string())
        if any(r.caption is not None for r in self.records):
            cols["caption"] = pa.array([r.caption for r in self.records], pa.string())
        if self.hashes:
            cols["hash"] = pa.array(self.hashes, pa.string())
        return pa.table(cols)

    def to_pandas(self):
        return self.table().to_pandas()

    def save(self, out: str | os.PathLike, plots: bool = True, report: bool = True) -> Path:
        """Write the run directory (clusters.parquet/.csv, metrics.json, run.json, plots/, report.html)."""
        import io

        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table = self.table()
        buf = io.BytesIO()
        pq.write_table(table, buf)
        atomic_write_bytes(out / "clusters.parquet", buf.getvalue())
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        atomic_write_bytes(out / "clusters.csv", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, self.embeddings.astype(np.float32))
        atomic_write_bytes(out / "embeddings.npy", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, np.asarray(self.centers, np.float32))
        atomic_write_bytes(out / "centers.npy", buf.getvalue())
        atomic_write_text(out / "metrics.json", json.dumps(_jsonable(self.metrics), indent=2))
        run = {"config": self.config, "timings": self.timings, "versions": _versions(),
               "k_sweep": self.sweep.to_dict() if self.sweep else None}
        atomic_write_text(out / "run.json", json.dumps(_jsonable(run), indent=2))
        if plots:
            from .plots import save_all_plots

            save_all_plots(self, out / "plots")
        if self.model is not None and hasattr(self.model, "predict_proba"):
            # Trained heads (SCAN/TEMI) are kept so `imgclust assign` can use their predictions.
            import pickle

            atomic_write_bytes(out / "model.pkl", pickle.dumps(self.model))
        if report:
            from .report import build_report

            build_report(out)
        return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("imgclust", "numpy", "torch", "scikit-learn", "faiss-cpu", "umap-learn", "kmedoids",
                "transformers", "pyarrow", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def embed_images(inputs: str | Sequence[str] | Sequence[ImageRecord], encoder="efficientnet-lite0",
                 labels: str | None = None, device: str = "auto", batch_size: int = 64,
                 cache_dir: str | os.PathLike | None = None, cache: bool = True,
                 progress: bool = False) -> EmbedResult:
    """Discover and embed images through the cache. Returns an :class:`~imgclust.embed.EmbedResult`."""
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], ImageRecord):
        records = list(inputs)
    else:
        records = discover(inputs, labels=labels)
    enc = create_encoder(encoder, device=device)
    store = None
    if cache:
        store = EmbeddingStore(cache_dir, enc.fingerprint(), enc.dim,
                               spec={"name": enc.name, "weights": enc.spec.weights})
    res = embed_records(records, enc, store=store, batch_size=batch_size, progress=progress)
    res.encoder = enc
    return res


def _distances_and_confidence(X: np.ndarray, labels: np.ndarray, centers: np.ndarray, model) -> tuple:
    n = len(X)
    dist = np.full(n, np.nan, np.float32)
    conf = np.full(n, np.nan, np.float32)
    if len(centers):
        d = np.sqrt(np.maximum(((X[:, None, :] - centers[None]) ** 2).sum(-1), 0)) if n * len(centers) < 5e6 else None
        if d is None:
            d = np.stack([np.linalg.norm(X - c, axis=1) for c in centers], 1)
        ok = (labels >= 0) & (labels < len(centers))
        dist[ok] = d[ok, labels[ok]]
        if d.shape[1] > 1:
            two = np.sort(d, axis=1)[:, :2]
            conf = (1.0 - two[:, 0] / np.maximum(two[:, 1], 1e-12)).astype(np.float32)
    proba = getattr(model, "probabilities_", None)
    if proba is not None:
        proba = np.asarray(proba)
        conf = (proba.max(1) if proba.ndim == 2 else proba).astype(np.float32)
    conf[labels < 0] = 0.0
    return dist, conf


def _centers(X: np.ndarray, labels: np.ndarray, model) -> np.ndarray:
    ids = sorted(set(labels.tolist()) - {-1})
    given = getattr(model, "cluster_centers_", None)
    if given is not None and len(given) == (max(ids) + 1 if ids else 0) and np.shape(given)[1] == X.shape[1]:
        return np.asarray(given, np.float32)
    k = max(ids) + 1 if ids else 0
    centers = np.zeros((k, X.shape[1]), np.float32)
    for c in ids:
        centers[c] = X[labels == c].mean(0)
    return centers


def _validate_options(method, reduce: str, map: str) -> None:
    """Fail on a bad method or reducer name before spending minutes on embedding."""
    from .reduce import REDUCERS

    needs_k(method)  # raises ImgclustError listing the valid methods
    for opt, value, valid in (("--reduce", reduce, REDUCERS), ("--map", map, REDUCERS[1:] + ("auto",))):
        if value not in valid:
            raise ImgclustError(f"unknown {opt} {value!r}; valid: {', '.join(valid)}")


def cluster_embeddings(embeddings: np.ndarray, records: Sequence[ImageRecord] | None = None, *,
                       reduce: str = "pca", n_components: int = 50, map: str = "auto",
                       method: str | Any = "kmeans", k: int | str | None = 10, seeds: int = 1,
                       random_state: int = 0, coords: np.ndarray | None = None, method_params: dict | None = None,
                       progress: bool = False, hashes: list[str] | None = None,
                       skipped: list[dict] | None = None, config: dict | None = None) -> ClusteringResult:
    """Reduce, cluster and score precomputed embeddings (everything after the store).

    Args:
        embeddings: (N, D) L2-normalised image embeddings.
        records: Matching records (paths, labels, captions); synthetic names when omitted.
        reduce: Reducer for the clustering input: ``none``, ``pca``, ``umap`` or ``tsne``.
        n_components: Clustering input dimension when reducing.
        map: Reducer for the 2-D map (``auto`` = umap if installed, else tsne; or pca, tsne, umap).
        method: Clusterer name (see :data:`imgclust.cluster.CLUSTERERS`) or an estimator.
        k: Number of clusters, ``"auto"`` to sweep and pick by silhouette, or ``None`` for methods
            that find their own (HDBSCAN).
        seeds: Repeat clustering with this many seeds; scores get ``_std``.
        random_state: Base seed.
        coords: Precomputed 2-D map coordinates (reused by ``cluster --from``).
        method_params: Extra keyword arguments for the clusterer.
    """
    t0 = time.perf_counter()
    _validate_options(method, reduce or "none", map)
    X0 = np.asarray(embeddings, np.float32)
    n = len(X0)
    if n == 0:
        raise ImgclustError("no images could be embedded (all were skipped)")
    records = list(records) if records is not None else [ImageRecord(f"item-{i}") for i in range(n)]
    method_name = method if isinstance(method, str) else type(method).__name__
    params = dict(method_params or {})
    takes_k = needs_k(method)
    if takes_k:
        if k is None:
            raise ImgclustError(f"method {method_name} needs --k N or --k auto")
        if k != "auto":
            try:
                k = int(k)
            except (TypeError, ValueError):
                raise ImgclustError(f"--k must be a number or 'auto' (got {k!r})") from None
            if k < 2:
                raise ImgclustError(f"k must be at least 2 (got {k})")
            if k > n:
                raise ImgclustError(f"k={k} is larger than the number of images ({n})")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    if reduce in (None, "none"):
        X = X0
    else:
        X = Reducer(reduce, n_components=n_components, random_state=random_state).fit_transform(X0)
    timings["reduce"] = time.perf_counter() - t

    sweep = None
    if takes_k and k == "auto":
        t = time.perf_counter()
        sweep_method = method if isinstance(method, str) and method in _SWEEPABLE else "kmeans"
        sweep = sweep_k(X, sweep_method, random_state=random_state)
        k = sweep.best_k
        timings["k_sweep"] = time.perf_counter() - t

    t = time.perf_counter()
    runs_int, runs_ext = [], []
    labels_true = [r.label for r in records]
    has_labels = any(lab is not None for lab in labels_true)
    lab_mask = np.array([lab is not None for lab in labels_true])
    model = None
    labels = None
    for s in range(max(1, int(seeds))):
        est = make_clusterer(method, n_clusters=k if takes_k else None, random_state=random_state + s,
                             progress=progress, **params)
        if not isinstance(method, str) and s > 0:
            from sklearn.base import clone

            est = clone(method).set_params(random_state=random_state + s) if "random_state" in method.get_params() else clone(method)
        est.fit(X)
        lab = np.asarray(est.labels_, np.int64)
        if s == 0:
            model, labels = est, lab
        runs_int.append(internal_scores(X, lab, random_state=random_state))
        if has_labels:
            yt = np.asarray([str(v) for v in np.asarray(labels_true, object)[lab_mask]])
            runs_ext.append(external_scores(yt, lab[lab_mask]))
    timings["cluster"] = time.perf_counter() - t

    t = time.perf_counter()
    if coords is None:
        if X0.shape[1] <= 2:
            coords = np.pad(X0, ((0, 0), (0, 2 - X0.shape[1])))
        else:
            coords = Reducer(map, n_components=2, random_state=random_state).fit_transform(X0)
    coords = np.asarray(coords, np.float32).reshape(n, -1)
    if coords.shape[1] < 2:  # a 1-D map (e.g. 2 images) still needs x and y
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    timings["map"] = time.perf_counter() - t

    centers = _centers(X, labels, model)
    dist, conf = _distances_and_confidence(X, labels, centers, model)
    ids, counts = np.unique(labels, return_counts=True)
    metrics: dict[str, Any] = {
        "n_images": n,
        "n_clusters": int(len(set(labels.tolist()) - {-1})),
        "n_noise": int((labels == -1).sum()),
        "skipped": list(skipped or []),
        "internal": aggregate_runs(runs_int),
        "internal_space": "input" if reduce in (None, "none") else f"{reduce}-{X.shape[1]}",
        "cluster_sizes": {int(c): int(m) for c, m in zip(ids, counts)},
        "seeds": int(max(1, seeds)),
    }
    if has_labels:
        yt = np.asarray([str(v) for v in np.asarray(labels_true, object)[lab_mask]])
        ext = aggregate_runs(runs_ext)
        if len(np.unique(yt)) > 1 and len(yt) > 5:
            ext["top5_neighbor_acc"] = neighbor_accuracy(X0[lab_mask], yt, k=min(5, len(yt) - 1))
        metrics["external"] = ext
        table, classes, clusters = confusion(yt, labels[lab_mask])
        metrics["confusion"] = {"classes": classes, "clusters": clusters, "matrix": table.tolist()}
        metrics["n_labelled"] = int(lab_mask.sum())
    if sweep is not None:
        metrics["k_sweep"] = sweep.to_dict()
    history = getattr(model, "loss_history_", None)
    if history is not None:
        hist = np.asarray(history, np.float64)
        best = int(getattr(model, "best_head_", 0) or 0)
        per_epoch = hist[:, best] if hist.ndim == 2 and best < hist.shape[1] else hist.reshape(len(hist), -1).mean(1)
        metrics["training"] = {"method": method_name, "best_head": best, "epochs": int(len(hist)),
                               "loss_history": [float(v) for v in per_epoch]}
    timings["total_after_embedding"] = time.perf_counter() - t0
    cfg = dict(config or {})
    cfg.update({"reduce": reduce, "n_components": n_components, "map": map, "method": method_name,
                "k": int(k) if takes_k else None, "k_requested": "auto" if sweep else cfg.get("k_requested", k),
                "seeds": int(max(1, seeds)), "random_state": random_state, "method_params": params})
    return ClusteringResult(records=records, embeddings=X0, features=X, labels=labels, coords=coords,
                            distances=dist, confidence=conf, centers=centers, metrics=metrics, config=cfg,
                            timings=timings, sweep=sweep, hashes=list(hashes or []), model=model)


def cluster_images(inputs: str | os.PathLike | Sequence[str | os.PathLike], encoder="efficientnet-lite0", *,
                   reduce: str = "pca", n_components: int = 50, map: str = "auto", method: str | Any = "kmeans",
                   k: int | str | None = 10, labels: str | None = None, seeds: int = 1, random_state: int = 0,
                   device: str = "auto", batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
                   cache: bool = True, out: str | os.PathLike | None = None, plots: bool = True,
                   report: bool = True, method_params: dict | None = None, progress: bool = False
                   ) -> ClusteringResult:
    """Cluster an image collection end to end.

    Args:
        inputs: Files, folders, globs or manifests (CSV/Parquet with ``path[,label][,caption]``).
        encoder: Registry name, ``hf:<hub id or dir>``, or an :class:`~imgclust.encoders.Encoder`.
        reduce: Reducer for the clustering input (``none``, ``pca``, ``umap``, ``tsne``).
        n_components: Clustering input dimension when reducing.
        map: Reducer for the 2-D map (``auto``, ``umap``, ``tsne``, ``pca``).
        method: Clusterer name or estimator.
        k: Number of clusters, ``"auto"``, or ``None`` (HDBSCAN).
        labels: ``"folder"`` (parent folder is the class) or ``"manifest"``.
        seeds: Repeat clustering with N seeds and report mean and std.
        random_state: Base seed.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: Images per forward pass.
        cache_dir: Embedding cache root (default ``~/.cache/imgclust``).
        cache: Use the embedding cache.
        out: Write the run directory here.
        plots: Write PNG plots (with ``out``).
        report: Write ``report.html`` (with ``out``).
        method_params: Extra clusterer arguments.
        progress: Show progress bars.

    Returns:
        A :class:`ClusteringResult`.
    """
    t0 = time.perf_counter()
    _validate_options(method, reduce, map)
    records = discover(inputs, labels=labels)
    if needs_k(method) and isinstance(k, int) and k > len(records):
        raise ImgclustError(f"k={k} is larger than the number of images ({len(records)})")
    emb = embed_images(records, encoder=encoder, device=device, batch_size=batch_size, cache_dir=cache_dir,
                       cache=cache, progress=progress)
    enc = emb.encoder
    config = {"inputs": [str(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)],
              "encoder": enc.name, "encoder_fingerprint": enc.fingerprint(), "encoder_weights": enc.spec.weights,
              "embedding_dim": int(emb.embeddings.shape[1]) if emb.embeddings.size else enc.dim,
              "device": enc.device, "labels": labels, "batch_size": batch_size,
              "cache_dir": str(cache_dir) if cache_dir else None, "k_requested": k}
    result = cluster_embeddings(emb.embeddings, emb.records, reduce=reduce, n_components=n_components, map=map,
                                method=method, k=k, seeds=seeds, random_state=random_state,
                                method_params=method_params, progress=progress, hashes=emb.hashes,
                                skipped=emb.skipped, config=config)
    result.timings = {"embed": emb.total_seconds, "embed_images_per_s": emb.images_per_second,
                      "n_encoded": emb.n_encoded, "n_cached": emb.n_cached, **result.timings,
                      "total": time.perf_counter() - t0}
    if out is not None:
        t = time.perf_counter()
        result.save(out, plots=plots, report=report)
        result.timings["write"] = time.perf_counter() - t
        atomic_write_text(Path(out) / "run.json", json.dumps(_jsonable(
            {"config": result.config, "timings": result.timings, "versions": _versions(),
             "k_sweep": result.sweep.to_dict() if result.sweep else None}), indent=2))
    return result


def load_run(run_dir: str | os.PathLike) -> dict:
    """Read a run directory back: table (pyarrow), embeddings, centers, metrics and run config."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    if not (run_dir / "clusters.parquet").exists():
        raise ImgclustError(f"{run_dir} is not an imgclust run directory (no clusters.parquet)")
    out = {"dir": run_dir, "table": pq.read_table(run_dir / "clusters.parquet"),
           "metrics": json.loads((run_dir / "metrics.json").read_text()),
           "run": json.loads((run_dir / "run.json").read_text())}
    emb = run_dir / "embeddings.npy"
    out["embeddings"] = np.load(emb) if emb.exists() else None
    cen = run_dir / "centers.npy"
    out["centers"] = np.load(cen) if cen.exists() else None
    return out


def recluster(run_dir: str | os.PathLike, method: str | Any = "kmeans", k: int | str | None = 10, *,
              reduce: str | None = None, n_components: int | None = None, seeds: int = 1,
              random_state: int = 0, out: str | os.PathLike | None = None, method_params: dict | None = None,
              progress: bool = False, plots: bool = True, report: bool = True) -> ClusteringResult:
    """Re-cluster an existing run from its saved embeddings, without touching the images."""
    run = load_run(run_dir)
    if run["embeddings"] is None:
        raise ImgclustError(f"{run_dir} has no embeddings.npy; re-run `imgclust run`")
    table = run["table"].to_pydict()
    records = [ImageRecord(p, lab, cap) for p, lab, cap in zip(
        table["path"], table.get("label", [None] * len(table["path"])),
        table.get("caption", [None] * len(table["path"])))]
    cfg = dict(run["run"].get("config", {}))
    coords = np.stack([table["x"], table["y"]], 1).astype(np.float32)
    result = cluster_embeddings(run["embeddings"], records,
                                reduce=reduce or cfg.get("reduce", "pca"),
                                n_components=n_components or cfg.get("n_components", 50),
                                map=cfg.get("map", "auto"), method=method, k=k, seeds=seeds,
                                random_state=random_state, coords=coords, method_params=method_params,
                                progress=progress, hashes=table.get("hash"),
                                skipped=run["metrics"].get("skipped", []),
                                config={**cfg, "from_run": str(run_dir), "k_requested": k})
    if out is not None:
        result.save(out, plots=plots, report=report)
    return result


def probe_run(run_dir: str | os.PathLike, cv: int = 5, random_state: int = 0, baseline: bool = True,
              report: bool = True) -> dict:
    """Supervised upper reference for a labelled run: a cross-validated linear probe.

    Fits logistic regression on the run's embeddings with the known labels (``cv`` folds) and,
    with ``baseline``, the papers' k-means protocol on the same embeddings, so the clustering
    scores can be read against both. Results go to ``metrics.json`` under ``probe``.
    """
    from .probe import kmeans_baseline, linear_probe

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cols = run["table"].to_pydict()
    labels = cols.get("label")
    if labels is None or all(v is None for v in labels):
        raise ImgclustError(f"{run_dir} has no labels: run with --labels folder or a manifest with a label column")
    if run["embeddings"] is None:
        raise ImgclustError(f"{run_dir} has no embeddings.npy; re-run `imgclust run`")
    mask = np.array([v is not None for v in labels])
    X = run["embeddings"][mask]
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
    atomic_write_text(run_dir / "metrics.json", json.dumps(_jsonable(metrics), indent=2))
    if report and (run_dir / "report.html").exists():
        from .report import build_report

        build_report(run_dir)
    return result
