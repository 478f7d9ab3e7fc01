"""Work with a finished run: find an image's nearest neighbours, cluster those candidates, and
put new images into the existing clusters without re-clustering.

* :func:`neighbors` embeds one query image with the run's own encoder and returns the most
  cosine-similar images of the run (the SCAN seed's candidate search).
* :func:`cluster_candidates` clusters just those candidates into a small run directory with
  its own report.
* :func:`assign` embeds new images, gives each the cluster of its nearest centre (or the saved
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

import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ImgclustError

__all__ = ["Neighbor", "NeighborsResult", "AssignResult", "neighbors", "cluster_candidates", "assign",
           "run_encoder", "cluster_space"]


@dataclass
class Neighbor:
    """One similar image of the run."""

    rank: int
    index: int
    path: str
    cluster: int
    similarity: float
    label: str | None = None


@dataclass
class NeighborsResult:
    """The query, its embedding and its neighbours in the run, most similar first."""

    query: str
    embedding: np.ndarray
    items: list[Neighbor]
    run_dir: Path

    @property
    def indices(self) -> list[int]:
        return [n.index for n in self.items]


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


# --------------------------------------------------------------------------- helpers


def run_encoder(run: dict, device: str = "auto", encoder=None):
    """The encoder a run was embedded with, checked against its recorded fingerprint."""
    from .encoders import create_encoder

    cfg = run["run"].get("config", {}) or {}
    if encoder is None:
        name = cfg.get("encoder")
        if not name:
            raise ImgclustError(f"{run['dir']} does not record its encoder (run.json config.encoder); "
                                "re-run `imgclust run` on the images")
        encoder = create_encoder(name, device=device)
    else:
        encoder = create_encoder(encoder, device=device)
    want = cfg.get("encoder_fingerprint")
    if want and encoder.fingerprint() != want:
        raise ImgclustError(f"encoder {encoder.name} (fingerprint {encoder.fingerprint()}) is not the one this run "
                            f"was embedded with ({want}): its vectors would not be comparable")
    return encoder


def _embeddings(run: dict) -> np.ndarray:
    emb = run["embeddings"]
    if emb is None:
        raise ImgclustError(f"{run['dir']} has no embeddings.npy; re-run `imgclust run`")
    if len(emb) != run["table"].num_rows:
        raise ImgclustError(f"{run['dir']}: embeddings.npy has {len(emb)} rows but clusters.parquet has "
                            f"{run['table'].num_rows}; the run directory is inconsistent")
    return np.asarray(emb, np.float32)


def _encode_one(encoder, image: str | os.PathLike) -> np.ndarray:
    from .sources import DecodeError, load_image

    try:
        img = load_image(str(image))
    except DecodeError as exc:
        raise ImgclustError(f"cannot use {image} as a query: {exc.reason}") from None
    except FileNotFoundError:
        raise ImgclustError(f"query image not found: {image}") from None
    return encoder.encode_images([img])[0]


# --------------------------------------------------------------------------- neighbours


def neighbors(run_dir: str | os.PathLike, image: str | os.PathLike, top: int = 10, *, device: str = "auto",
              encoder=None) -> NeighborsResult:
    """The ``top`` images of a run most cosine-similar to ``image``.

    Args:
        run_dir: Run directory (with ``embeddings.npy``).
        image: Query image file (inside or outside the run).
        top: Number of neighbours.
        device: Torch device for the encoder.
        encoder: Override the run's encoder (an :class:`~imgclust.encoders.Encoder` or name);
            it must have the same fingerprint.

    Returns:
        A :class:`NeighborsResult`; an image that is part of the run comes back first.
    """
    from .api import load_run
    from .knn import knn_query

    if top < 1:
        raise ImgclustError(f"--top must be at least 1 (got {top})")
    if not Path(image).exists():
        raise ImgclustError(f"query image not found: {image}")
    run = load_run(run_dir)
    emb = _embeddings(run)
    enc = run_encoder(run, device, encoder)
    q = _encode_one(enc, image)
    if q.shape[0] != emb.shape[1]:
        raise ImgclustError(f"query embedding has {q.shape[0]} dimensions, the run's have {emb.shape[1]}")
    idx, sims = knn_query(emb, q[None], min(top, len(emb)))
    cols = run["table"].to_pydict()
    labels = cols.get("label")
    items = [Neighbor(rank=r + 1, index=int(i), path=str(cols["path"][i]), cluster=int(cols["cluster"][i]),
                      similarity=float(s), label=None if labels is None else labels[i])
             for r, (i, s) in enumerate(zip(idx[0], sims[0])) if i >= 0]
    return NeighborsResult(query=str(image), embedding=q, items=items, run_dir=Path(run_dir))


def cluster_candidates(run_dir: str | os.PathLike, result: NeighborsResult, k: int, out: str | os.PathLike, *,
                       method: str = "kmeans", map: str = "pca", random_state: int = 0, report: bool = True):
    """Cluster just the candidates of a :func:`neighbors` search into a small run directory.

    Args:
        run_dir: The run the candidates come from.
        result: The neighbour search.
        k: Number of clusters.
        out: New run directory (clusters, plots, report.html).
        method: Clusterer name.
        map: 2-D map reducer (``pca`` is instant and fine for a few hundred images).
        random_state: Seed.
        report: Write plots and report.html.

    Returns:
        The :class:`~imgclust.api.ClusteringResult` (saved to ``out``).
    """
    from .api import cluster_embeddings, load_run
    from .sources import ImageRecord

    idx = result.indices
    if k < 2 or k > len(idx):
        raise ImgclustError(f"--cluster must be between 2 and the number of candidates ({len(idx)}), got {k}")
    run = load_run(run_dir)
    emb = _embeddings(run)
    cols = run["table"].to_pydict()
    records = [ImageRecord(str(cols["path"][i]), (cols.get("label") or [None] * len(emb))[i],
                           (cols.get("caption") or [None] * len(emb))[i]) for i in idx]
    cfg = dict(run["run"].get("config", {}) or {})
    cfg.update({"from_run": str(run_dir), "query": result.query, "candidates": len(idx)})
    hashes = [cols["hash"][i] for i in idx] if "hash" in cols else None
    res = cluster_embeddings(emb[idx], records, reduce="pca", n_components=min(50, len(idx) - 1), map=map,
                             method=method, k=k, random_state=random_state, hashes=hashes, config=cfg)
    res.save(out, plots=report, report=report)
    return res


# --------------------------------------------------------------------------- assign


def cluster_space(run: dict, n_fit: int | None = None, tol: float = 1e-3):
    """How to measure "nearest centre" for new embeddings of this run.

    Returns:
        ``(transform, centers, space)``: a function mapping (M, D) embeddings to the space of
        ``centers``, the centres, and a short name of that space.
    """
    from .reduce import Reducer

    emb = _embeddings(run)
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
    from .knn import knn_query

    k = max(1, min(k, len(emb_old)))
    idx, sims = knn_query(emb_old, emb_new, k)
    # Softmax over similarities, sharp enough that a near-duplicate sits on its twin.
    w = np.exp((sims - sims[:, :1]) / 0.01)
    w[sims[:, 0] > 0.9999] = np.eye(k)[0]
    return (coords_old[idx] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


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
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from .api import _jsonable, load_run
    from .sources import discover
    from .store import EmbeddingStore, atomic_write_bytes, atomic_write_text

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    emb_old = _embeddings(run)
    table = run["table"]
    cols = table.to_pydict()
    info = run["run"]
    cfg = info.get("config", {}) or {}
    log = dict(info.get("assign") or {})
    n_fit = int(log.get("n_fit") or len(emb_old))

    records = discover(inputs, labels=labels)
    known = {os.path.abspath(p) for p in cols["path"]}
    skipped = [{"path": r.path, "reason": "already in the run"} for r in records if os.path.abspath(r.path) in known]
    records = [r for r in records if os.path.abspath(r.path) not in known]
    if not records:
        return AssignResult([], np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32),
                            np.zeros((0, 2), np.float32), "none", skipped, len(emb_old))

    enc = run_encoder(run, device, encoder)
    store = None
    if cache:
        store = EmbeddingStore(cache_dir or cfg.get("cache_dir"), enc.fingerprint(), enc.dim,
                               spec={"name": enc.name, "weights": enc.spec.weights})
    from .embed import embed_records

    emb = embed_records(records, enc, store=store, batch_size=batch_size, progress=progress)
    skipped += emb.skipped
    E = emb.embeddings
    if not len(E):
        return AssignResult([], np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32),
                            np.zeros((0, 2), np.float32), "none", skipped, len(emb_old))
    if E.shape[1] != emb_old.shape[1]:
        raise ImgclustError(f"new embeddings have {E.shape[1]} dimensions, the run's have {emb_old.shape[1]}")

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
    old_labels = np.asarray(cols["cluster"], np.int64)
    if (old_labels[:n_fit] == -1).any() and space != "embedding-centroids":
        # Density clustering (HDBSCAN): farther from the centre than every member means noise.
        saved = np.asarray([np.nan if v is None else v for v in cols["distance"]], np.float64)[:n_fit]
        for j, c in enumerate(lab):
            m = (old_labels[:n_fit] == c) & np.isfinite(saved)
            if m.any() and dist[j] > saved[m].max():
                lab[j], conf[j] = -1, 0.0

    coords_old = np.stack([cols["x"], cols["y"]], 1).astype(np.float32)
    coords = _place_on_map(emb_old, coords_old, E).astype(np.float32)

    n_new = len(E)
    new_rows: dict[str, Any] = {
        "path": [r.path for r in emb.records], "cluster": lab.tolist(), "x": coords[:, 0].tolist(),
        "y": coords[:, 1].tolist(), "distance": dist.tolist(), "confidence": conf.tolist(),
    }
    new_labels = [r.label for r in emb.records]
    if "label" in cols or any(v is not None for v in new_labels):
        cols.setdefault("label", [None] * len(emb_old))
        new_rows["label"] = new_labels
    new_caps = [r.caption for r in emb.records]
    if "caption" in cols or any(v is not None for v in new_caps):
        cols.setdefault("caption", [None] * len(emb_old))
        new_rows["caption"] = new_caps
    if "hash" in cols:
        new_rows["hash"] = emb.hashes
    if "cluster_name" in cols:  # written by `imgclust name`: new rows take their cluster's name
        names = run["metrics"].get("cluster_names") or {}
        new_rows["cluster_name"] = [names.get(str(int(c))) for c in lab]
    cols["assigned"] = [bool(v) for v in cols.get("assigned", [False] * len(emb_old))]
    new_rows["assigned"] = [True] * n_new
    merged = {name: list(cols.get(name, [None] * len(emb_old))) + list(new_rows.get(name, [None] * n_new))
              for name in list(cols) + [c for c in new_rows if c not in cols]}
    types = {"path": pa.string(), "cluster": pa.int64(), "x": pa.float32(), "y": pa.float32(),
             "distance": pa.float32(), "confidence": pa.float32(), "label": pa.string(), "caption": pa.string(),
             "hash": pa.string(), "assigned": pa.bool_(), "cluster_name": pa.string()}
    out = pa.table({name: pa.array(vals, types.get(name)) for name, vals in merged.items()})

    # run.json first (records which rows the clustering was fitted on), then the data files.
    log["n_fit"] = n_fit
    log["space"] = space
    log.setdefault("batches", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "n": n_new,
                                          "inputs": [str(i) for i in ([inputs] if isinstance(inputs, str) else inputs)],
                                          "skipped": len(skipped)})
    info["assign"] = log
    atomic_write_text(run_dir / "run.json", json.dumps(_jsonable(info), indent=2))
    buf = io.BytesIO()
    np.save(buf, np.concatenate([emb_old, E]).astype(np.float32))
    atomic_write_bytes(run_dir / "embeddings.npy", buf.getvalue())
    buf = io.BytesIO()
    pq.write_table(out, buf)
    atomic_write_bytes(run_dir / "clusters.parquet", buf.getvalue())
    buf = io.BytesIO()
    pacsv.write_csv(out, buf)
    atomic_write_bytes(run_dir / "clusters.csv", buf.getvalue())
    metrics = dict(run["metrics"])
    metrics["n_assigned"] = int(sum(merged["assigned"]))
    atomic_write_text(run_dir / "metrics.json", json.dumps(_jsonable(metrics), indent=2))
    if report:
        from .report import build_report

        build_report(run_dir)
    return AssignResult(paths=[r.path for r in emb.records], clusters=lab, distances=dist, confidence=conf,
                        coords=coords, space=space, skipped=skipped, n_total=len(emb_old) + n_new)
