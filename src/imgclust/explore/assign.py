"""Put new images into a finished run's clusters without re-clustering.

:func:`assign` embeds new images, gives each the cluster of its nearest centre (or the saved
head's prediction), a distance and a confidence, places it on the existing 2-D map, and
appends it to ``clusters.parquet/.csv`` and ``embeddings.npy`` (atomically), then rebuilds
the report.

Nearest centre is measured where the clusterer measured it: ``centers.npy`` lives in the
clustering feature space, which may be PCA-reduced. The PCA is refitted on the rows the run was
clustered on (same data, components and seed give the same projection), and the refit is
verified against the saved distances before it is trusted; when it cannot be (UMAP/t-SNE input,
or a mismatch), assignment falls back to cosine distance to the cluster centroids in the original
embedding space, and says so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ImgclustError
from ..rundir import load_run, run_embeddings, run_encoder

__all__ = ["AssignResult", "assign", "cluster_space"]


@dataclass
class AssignResult:
    """What :func:`assign` added: one entry per new image, in input order."""

    paths: list[str]
    clusters: np.ndarray
    distances: np.ndarray
    confidence: np.ndarray
    coords: np.ndarray
    space: str
    skipped: list[dict] = field(default_factory=list)
    n_total: int = 0


def cluster_space(run: dict, n_fit: int | None = None, tol: float = 1e-3):
    """How to measure "nearest centre" for new embeddings of this run.

    Returns:
        ``(transform, centers, space)``: a function mapping (M, D) embeddings to the space of
        ``centers``, the centres, and a short name of that space.
    """
    from ..reduce import Reducer

    emb = run_embeddings(run)
    n_fit = int(n_fit or len(emb))
    cols = run["table"].to_pydict()
    labels = np.asarray(cols["cluster"], np.int64)[:n_fit]
    cfg = run["run"].get("config", {}) or {}
    centers = run["centers"]
    reduce = cfg.get("reduce") or "none"

    def verified(transform) -> bool:
        """Recompute the saved distance-to-centre of the clustered rows in this space."""
        saved = np.asarray([np.nan if v is None else v for v in cols["distance"]], np.float64)[:n_fit]
        ok = (labels >= 0) & (labels < len(centers)) & np.isfinite(saved)
        if not ok.any():
            return False
        rows = np.flatnonzero(ok)[:2000]
        X = transform(emb[rows])
        d = np.linalg.norm(X - centers[labels[rows]], axis=1)
        return bool(np.allclose(d, saved[rows], rtol=tol, atol=tol * max(1.0, float(np.median(saved[rows])))))

    if centers is not None and len(centers):
        centers = np.asarray(centers, np.float32)
        if reduce == "none" and centers.shape[1] == emb.shape[1]:
            t = lambda X: np.asarray(X, np.float32)  # noqa: E731
            if verified(t):
                return t, centers, "input"
        elif reduce == "pca":
            red = Reducer("pca", n_components=int(cfg.get("n_components") or 50),
                          random_state=int(cfg.get("random_state") or 0)).fit(emb[:n_fit])
            if red.embedding_.shape[1] == centers.shape[1] and verified(red.transform):
                return red.transform, centers, f"pca-{centers.shape[1]}"
    # Fallback: cosine to the member centroids in the original embedding space.
    ids = sorted(set(labels.tolist()) - {-1})
    if not ids:
        raise ImgclustError("this run has no clusters to assign to")
    k = max(ids) + 1
    cents = np.zeros((k, emb.shape[1]), np.float32)
    for c in ids:
        m = emb[:n_fit][labels == c].mean(0)
        cents[c] = m / max(np.linalg.norm(m), 1e-12)
    for c in set(range(k)) - set(ids):
        cents[c] = np.inf  # never nearest
    return (lambda X: np.asarray(X, np.float32) / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12),
            cents, "embedding-centroids")


def _load_head(run_dir: Path):
    """A trained clustering head saved with the run (``model.pkl`` with ``predict_proba``), if any."""
    path = run_dir / "model.pkl"
    if not path.exists():
        return None
    import pickle

    with open(path, "rb") as f:  # the user's own run directory, written by imgclust
        model = pickle.load(f)
    return model if hasattr(model, "predict_proba") else None


def _place_on_map(emb_old: np.ndarray, coords_old: np.ndarray, emb_new: np.ndarray, k: int = 5) -> np.ndarray:
    """Map position of new points: similarity-weighted mean of their nearest old points' positions."""
    from ..knn import knn_query

    k = max(1, min(k, len(emb_old)))
    idx, sims = knn_query(emb_old, emb_new, k)
    # Softmax over similarities, sharp enough that a near-duplicate sits on its twin.
    w = np.exp((sims - sims[:, :1]) / 0.01)
    w[sims[:, 0] > 0.9999] = np.eye(k)[0]
    return (coords_old[idx] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


def _empty(skipped: list[dict], n_total: int) -> AssignResult:
    return AssignResult([], np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32),
                        np.zeros((0, 2), np.float32), "none", skipped, n_total)


def _nearest_centre(run: dict, run_dir: Path, E: np.ndarray, n_fit: int) -> tuple:
    """``(cluster, distance, confidence, space)`` of new embeddings ``E`` in the run's clustering."""
    transform, centers, space = cluster_space(run, n_fit)
    X = transform(E)
    d = np.sqrt(np.maximum(((X[:, None, :] - centers[None]) ** 2).sum(-1), 0))
    d = np.where(np.isfinite(d), d, np.inf)
    lab = d.argmin(1).astype(np.int64)
    dist = d[np.arange(len(X)), lab].astype(np.float32)
    if d.shape[1] > 1:
        two = np.sort(d, axis=1)[:, :2]
        conf = (1.0 - two[:, 0] / np.maximum(two[:, 1], 1e-12)).astype(np.float32)
    else:
        conf = np.ones(len(X), np.float32)
    head = _load_head(run_dir)
    if head is not None and space != "embedding-centroids":
        proba = np.asarray(head.predict_proba(X))
        lab, conf, space = proba.argmax(1).astype(np.int64), proba.max(1).astype(np.float32), space + "+head"
    cols = run["table"].to_pydict()
    old_labels = np.asarray(cols["cluster"], np.int64)[:n_fit]
    if (old_labels == -1).any() and space != "embedding-centroids":
        # Density clustering (HDBSCAN): farther from the centre than every member means noise.
        saved = np.asarray([np.nan if v is None else v for v in cols["distance"]], np.float64)[:n_fit]
        for j, c in enumerate(lab):
            m = (old_labels == c) & np.isfinite(saved)
            if m.any() and dist[j] > saved[m].max():
                lab[j], conf[j] = -1, 0.0
    return lab, dist, conf, space


_TYPES = {"path": "string", "cluster": "int64", "x": "float32", "y": "float32", "distance": "float32",
          "confidence": "float32", "label": "string", "caption": "string", "hash": "string", "assigned": "bool_",
          "cluster_name": "string"}


def _appended_table(run: dict, emb, lab, coords, dist, conf):
    """The run's table with one new row per assigned image (column ``assigned`` marks them)."""
    import pyarrow as pa

    cols = run["table"].to_pydict()
    n_old, n_new = run["table"].num_rows, len(lab)
    new_rows: dict[str, Any] = {
        "path": [r.path for r in emb.records], "cluster": lab.tolist(), "x": coords[:, 0].tolist(),
        "y": coords[:, 1].tolist(), "distance": dist.tolist(), "confidence": conf.tolist(),
    }
    for key in ("label", "caption"):
        vals = [getattr(r, key) for r in emb.records]
        if key in cols or any(v is not None for v in vals):
            cols.setdefault(key, [None] * n_old)
            new_rows[key] = vals
    if "hash" in cols:
        new_rows["hash"] = emb.hashes
    if "cluster_name" in cols:  # written by `imgclust name`: new rows take their cluster's name
        names = run["metrics"].get("cluster_names") or {}
        new_rows["cluster_name"] = [names.get(str(int(c))) for c in lab]
    cols["assigned"] = [bool(v) for v in cols.get("assigned", [False] * n_old)]
    new_rows["assigned"] = [True] * n_new
    merged = {name: list(cols.get(name, [None] * n_old)) + list(new_rows.get(name, [None] * n_new))
              for name in list(cols) + [c for c in new_rows if c not in cols]}
    return pa.table({name: pa.array(vals, getattr(pa, _TYPES[name])() if name in _TYPES else None)
                     for name, vals in merged.items()})


def _write(run_dir: Path, run: dict, table, embeddings: np.ndarray, log: dict, report: bool) -> None:
    """run.json first (it records which rows the clustering was fitted on), then the data files."""
    from .._io import atomic_write_json
    from ..rundir import write_embeddings, write_table

    info = dict(run["run"])
    info["assign"] = log
    atomic_write_json(run_dir / "run.json", info)
    write_embeddings(run_dir, embeddings)
    write_table(run_dir, table)
    metrics = dict(run["metrics"])
    metrics["n_assigned"] = int(sum(table.column("assigned").to_pylist()))
    atomic_write_json(run_dir / "metrics.json", metrics)
    if report:
        from ..report import build_report

        build_report(run_dir)


def assign(run_dir: str | os.PathLike, inputs: str | Sequence[str], *, labels: str | None = None,
           device: str = "auto", batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
           cache: bool = True, progress: bool = False, report: bool = True, encoder=None) -> AssignResult:
    """Put new images into a run's existing clusters and append them to its outputs.

    Args:
        run_dir: Run directory to extend (clusters.parquet/.csv and embeddings.npy are rewritten
            atomically; centers.npy and the scores stay those of the original clustering).
        inputs: New image files, folders, globs or manifests.
        labels: ``folder`` or ``manifest`` to record true labels of the new images.
        device: Torch device for the encoder.
        batch_size: Images per forward pass.
        cache_dir: Embedding cache (default: the run's, else ``~/.cache/imgclust``).
        cache: Use the embedding cache.
        progress: Show progress bars.
        report: Rebuild report.html afterwards.
        encoder: Override the run's encoder (must have the same fingerprint).

    Returns:
        An :class:`AssignResult`. Images already in the run, and files that cannot be decoded,
        are skipped and listed in ``skipped``.
    """
    from ..pipeline.embed import embed_records, open_store
    from ..pipeline.sources import discover

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    emb_old = run_embeddings(run)
    cfg = run["run"].get("config", {}) or {}
    log = dict(run["run"].get("assign") or {})
    n_fit = int(log.get("n_fit") or len(emb_old))

    known = {os.path.abspath(p) for p in run["table"].column("path").to_pylist()}
    records = discover(inputs, labels=labels)
    skipped = [{"path": r.path, "reason": "already in the run"} for r in records if os.path.abspath(r.path) in known]
    records = [r for r in records if os.path.abspath(r.path) not in known]
    if not records:
        return _empty(skipped, len(emb_old))
    enc = run_encoder(run, device, encoder)
    store = open_store(enc, cache_dir or cfg.get("cache_dir")) if cache else None
    emb = embed_records(records, enc, store=store, batch_size=batch_size, progress=progress)
    skipped += emb.skipped
    E = emb.embeddings
    if not len(E):
        return _empty(skipped, len(emb_old))
    if E.shape[1] != emb_old.shape[1]:
        raise ImgclustError(f"new embeddings have {E.shape[1]} dimensions, the run's have {emb_old.shape[1]}")

    lab, dist, conf, space = _nearest_centre(run, run_dir, E, n_fit)
    coords_old = np.stack([run["table"].column(c).to_numpy() for c in ("x", "y")], 1).astype(np.float32)
    coords = _place_on_map(emb_old, coords_old, E).astype(np.float32)
    table = _appended_table(run, emb, lab, coords, dist, conf)
    log.update({"n_fit": n_fit, "space": space})
    log.setdefault("batches", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "n": len(E),
                                          "inputs": [str(i) for i in ([inputs] if isinstance(inputs, str) else inputs)],
                                          "skipped": len(skipped)})
    _write(run_dir, run, table, np.concatenate([emb_old, E]), log, report)
    return AssignResult(paths=[r.path for r in emb.records], clusters=lab, distances=dist, confidence=conf,
                        coords=coords, space=space, skipped=skipped, n_total=len(emb_old) + len(E))
