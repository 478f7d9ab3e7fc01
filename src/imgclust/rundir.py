"""The run directory contract: :class:`ClusteringResult` and how it is written and read back.

A run directory holds ``clusters.parquet`` / ``clusters.csv`` (one row per image: ``path``,
``cluster``, ``x``, ``y``, ``distance``, ``confidence``, ``label``, ``caption``, ``hash``),
``metrics.json``, ``run.json`` (configuration, versions, timings), ``embeddings.npy`` and
``centers.npy`` (what ``cluster --from`` and the explore commands reuse) and, for trained
heads, ``model.pkl``. From :data:`~imgclust.limits.RUN_REF_ROWS` images on, a run embedded
through the store does not copy its vectors: ``embeddings.ref.json`` names the store's
shards and ``embeddings.rows.npy`` holds ``[shard, row]`` per image; :func:`load_run` reads
either form (the reference as a memory map when the rows are one contiguous shard range).
Plots and ``report.html`` are drawn from these files by :mod:`imgclust.report`. Every file is written atomically.

Every command that works on a finished run reads it through :func:`load_run`; nothing here
depends on how the run was produced.
"""

from __future__ import annotations

import io
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes, atomic_write_json, atomic_write_table
from ._rows import ShardRows
from .errors import ImgclustError
from .limits import RUN_REF_ROWS
from .pipeline.sources import ImageRecord

__all__ = ["ClusteringResult", "load_run", "run_records", "run_embeddings", "write_table", "write_embeddings",
           "write_run_json", "versions", "run_encoder", "run_config"]


@dataclass
class ClusteringResult:
    """Everything a run produced, as data. :meth:`save` writes the run directory's data files."""

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
    sweep: Any = None
    hashes: list[str] = field(default_factory=list)
    model: Any = None
    store: Any = None  # the EmbeddingStore the vectors came from (large runs reference its shards)
    columns: dict = field(default_factory=dict)  # extra per-row columns (augmented, source, view)

    @property
    def n_clusters(self) -> int:
        """Number of clusters found (noise excluded)."""
        return int(len(set(self.labels.tolist()) - {-1}))

    @property
    def paths(self) -> list[str]:
        """Image paths in row order."""
        return [r.path for r in self.records]

    @property
    def true_labels(self) -> list[str | None]:
        """Known labels in row order (``None`` where unknown)."""
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
        for name, values in self.columns.items():
            cols[name] = pa.array(list(values))
        return pa.table(cols)

    def to_pandas(self):
        """:meth:`table` as a pandas DataFrame."""
        return self.table().to_pandas()

    def save(self, out: str | os.PathLike) -> Path:
        """Write the data files of the run directory (tables, arrays, metrics.json, run.json, model.pkl).

        Plots and ``report.html`` are drawn from these by :func:`imgclust.report.write_run`.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_table(out, self.table())
        write_embeddings(out, self.embeddings, self.hashes, self.store)
        atomic_write_bytes(out / "centers.npy", _npy(self.centers))
        atomic_write_json(out / "metrics.json", self.metrics)
        write_run_json(out, self.config, self.timings, self.sweep)
        if self.model is not None and hasattr(self.model, "predict_proba"):
            # Trained heads (SCAN/TEMI) are kept so `imgclust assign` can use their predictions.
            import pickle

            atomic_write_bytes(out / "model.pkl", pickle.dumps(self.model))
        return out


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, np.float32))
    return buf.getvalue()


def write_table(out: str | os.PathLike, table) -> None:
    """Write ``clusters.parquet`` and ``clusters.csv`` from one pyarrow table, atomically."""
    atomic_write_table(Path(out) / "clusters.parquet", table, csv=True)


def write_embeddings(out: str | os.PathLike, embeddings: np.ndarray, hashes: list[str] | None = None,
                     store=None) -> None:
    """Write ``embeddings.npy`` (float32), or, for a large run from ``store``, a reference to its shards.

    The reference (``embeddings.ref.json`` + ``embeddings.rows.npy``) is used from
    :data:`~imgclust.limits.RUN_REF_ROWS` rows when every row's hash is in the store; the
    store's remaining parquet parts are sealed into a shard first. Whichever form is written,
    the other is removed, so a run directory never holds both.
    """
    out = Path(out)
    loc = None
    if store is not None and hashes and len(hashes) == len(embeddings) >= RUN_REF_ROWS:
        loc = store.locate(list(hashes))
        if loc is None:
            store.seal()
            loc = store.locate(list(hashes))
    stale = ["embeddings.ref.json", "embeddings.rows.npy"] if loc is None else ["embeddings.npy"]
    if loc is None:
        atomic_write_bytes(out / "embeddings.npy", _npy(embeddings))
    else:
        names, rows = loc
        buf = io.BytesIO()
        np.save(buf, rows.astype(np.int64))
        atomic_write_bytes(out / "embeddings.rows.npy", buf.getvalue())
        atomic_write_json(out / "embeddings.ref.json", {"store": str(Path(store.dir).resolve()), "shards": names,
                                                        "rows": "embeddings.rows.npy", "n": len(rows),
                                                        "dim": int(store.dim)})
    for name in stale:
        (out / name).unlink(missing_ok=True)


def _read_ref(run_dir: Path) -> tuple[np.ndarray | None, str | None]:
    """Embeddings behind ``embeddings.ref.json``: ``(array, None)`` or ``(None, why not)``."""
    ref = json.loads((run_dir / "embeddings.ref.json").read_text())
    rows = np.load(run_dir / ref.get("rows", "embeddings.rows.npy"))
    maps = []
    for name in ref["shards"]:
        path = Path(ref["store"]) / name
        if not path.exists():
            return None, (f"{run_dir}: its embeddings live in the store shard {path}, which is gone "
                          "(cache moved or deleted); re-run `imgclust run` or `imgclust embed`")
        maps.append(np.load(path, mmap_mode="r"))
    if len(maps) == 1 and len(rows) and (np.diff(rows[:, 1]) == 1).all():
        start = int(rows[0, 1])
        return maps[0][start:start + len(rows)], None  # zero copy: a view of the memory map
    if len(rows) >= RUN_REF_ROWS:  # many shards: a lazy view over them, rows gathered when indexed
        starts = np.cumsum([0] + [len(m) for m in maps], dtype=np.int64)
        return ShardRows(maps, starts, starts[rows[:, 0]] + rows[:, 1]), None
    out = np.empty((len(rows), int(ref["dim"])), np.float32)
    for s, arr in enumerate(maps):
        sel = np.flatnonzero(rows[:, 0] == s)
        order = np.argsort(rows[sel, 1], kind="stable")
        out[sel[order]] = arr[rows[sel[order], 1]]
    return out, None


def run_config(inputs, emb, *, labels: str | None = None, batch_size: int = 64, cache_dir=None, k=None) -> dict:
    """The configuration ``run.json`` records for images embedded as ``emb`` (an EmbedResult)."""
    enc = emb.encoder
    cfg = {"inputs": [str(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)],
           "encoder": enc.name, "encoder_fingerprint": enc.fingerprint(), "encoder_weights": enc.spec.weights,
           "embedding_dim": int(emb.embeddings.shape[1]) if emb.embeddings.size else enc.dim,
           "device": enc.device, "runtime": getattr(enc, "runtime", "torch"), "labels": labels,
           "batch_size": getattr(emb, "batch_size", None) or batch_size,
           "cache_dir": str(cache_dir) if cache_dir else None, "k_requested": k}
    parts = getattr(emb, "parts", None)
    if parts:  # several encoders: embeddings.npy holds their vectors side by side, `spaces` wide
        cfg["encoder"] = ",".join(p.encoder.name for p in parts)
        cfg["encoder_fingerprint"] = ",".join(p.encoder.fingerprint() for p in parts)
        cfg["encoders"] = [{"name": p.encoder.name, "fingerprint": p.encoder.fingerprint(),
                            "weights": p.encoder.spec.weights, "dim": int(p.embeddings.shape[1])} for p in parts]
        cfg["spaces"] = [int(p.embeddings.shape[1]) for p in parts]
    return cfg


def write_run_json(out: str | os.PathLike, config: dict, timings: dict, sweep=None, **extra) -> None:
    """Write ``run.json``: configuration, timings per stage, package versions (and the k sweep)."""
    run = {"config": config, "timings": timings, "versions": versions(),
           "k_sweep": sweep.to_dict() if sweep is not None else None, **extra}
    atomic_write_json(Path(out) / "run.json", run)


def versions() -> dict:
    """Python, platform and the versions of the packages that shape a run's numbers."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("imgclust", "numpy", "torch", "scikit-learn", "faiss-cpu", "umap-learn", "kmedoids",
                "transformers", "pyarrow", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def load_run(run_dir: str | os.PathLike) -> dict:
    """Read a run directory back.

    Returns:
        ``{"dir", "table" (pyarrow), "metrics", "run", "embeddings", "centers", "embeddings_error"}``;
        the arrays are ``None`` when their files are absent (``embeddings_error`` then says why,
        when the run references a store shard that is gone). ``embeddings`` comes from
        ``embeddings.npy`` or from the store shards named by ``embeddings.ref.json``.
    """
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    if not (run_dir / "clusters.parquet").exists():
        raise ImgclustError(f"{run_dir} is not an imgclust run directory (no clusters.parquet)")
    out = {"dir": run_dir, "table": pq.read_table(run_dir / "clusters.parquet"),
           "metrics": json.loads((run_dir / "metrics.json").read_text()),
           "run": json.loads((run_dir / "run.json").read_text())}
    emb = run_dir / "embeddings.npy"
    out["embeddings"], out["embeddings_error"] = (np.load(emb), None) if emb.exists() else (None, None)
    if out["embeddings"] is None and (run_dir / "embeddings.ref.json").exists():
        out["embeddings"], out["embeddings_error"] = _read_ref(run_dir)
    cen = run_dir / "centers.npy"
    out["centers"] = np.load(cen) if cen.exists() else None
    return out


def run_embeddings(run: dict) -> np.ndarray:
    """The run's embeddings as float32, checked against its table (one row per image)."""
    emb = run["embeddings"]
    if emb is None:
        raise ImgclustError(run.get("embeddings_error") or f"{run['dir']} has no embeddings.npy; re-run `imgclust run`")
    if len(emb) != run["table"].num_rows:
        raise ImgclustError(f"{run['dir']}: embeddings.npy has {len(emb)} rows but clusters.parquet has "
                            f"{run['table'].num_rows}; the run directory is inconsistent")
    return np.asarray(emb, np.float32)


def run_records(run: dict, rows=None) -> list[ImageRecord]:
    """:class:`ImageRecord` of each row (or of ``rows``) of a loaded run: path, label, caption."""
    cols = run["table"].to_pydict()
    n = len(cols["path"])
    labels = cols.get("label") or [None] * n
    captions = cols.get("caption") or [None] * n
    idx = range(n) if rows is None else rows
    return [ImageRecord(str(cols["path"][i]), labels[i], captions[i]) for i in idx]


def run_encoder(run: dict, device: str = "auto", encoder=None, strict: bool = True):
    """Re-create the encoder a run was embedded with (``run.json``'s ``config.encoder``).

    Args:
        run: :func:`load_run` output.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        encoder: Use this encoder (name or object) instead of the recorded one.
        strict: A fingerprint that differs from the run's (other weights or preprocessing) is an
            error; with ``strict=False`` only a warning (naming and search still make sense on
            a re-saved checkpoint, neighbour distances do not).
    """
    import dataclasses
    import warnings

    from .encoders import create_encoder, get_spec

    cfg = run["run"].get("config", {}) or {}
    name = cfg.get("encoder")
    if encoder is None:
        if not name:
            raise ImgclustError(f"{run['dir']} does not record its encoder (run.json config.encoder); "
                                "re-run `imgclust run` on the images")
        target = name
        weights = cfg.get("encoder_weights")
        if (name.startswith("hf:") and not os.path.exists(os.path.expanduser(name[3:])) and weights
                and os.path.isdir(weights)):
            # A relative hf:DIR given in another working directory: use the absolute path the
            # run recorded, under the original name (so the fingerprint still matches).
            target = dataclasses.replace(get_spec(f"hf:{weights}"), name=name)
        encoder = target
    if isinstance(encoder, str) or dataclasses.is_dataclass(encoder):  # a name or a spec; objects pass through
        encoder = create_encoder(encoder, device=device)
    want = cfg.get("encoder_fingerprint")
    if want and encoder.fingerprint() != want:
        if strict:
            raise ImgclustError(f"encoder {encoder.name} (fingerprint {encoder.fingerprint()}) is not the one this "
                                f"run was embedded with ({want}): its vectors would not be comparable")
        warnings.warn(f"encoder {encoder.name} differs from the one that embedded {run['dir']} "
                      "(weights re-saved?): scores may be off; re-run `imgclust run` to re-embed", stacklevel=3)
    return encoder
