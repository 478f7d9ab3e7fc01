"""Heatmaps of the image regions that make a cluster's prototypes similar to the cluster centre.

:func:`explain_run` picks each cluster's prototypes (the members closest to its centre), asks
:func:`~imgclust.explore._gradcam.gradcam` where each one matches its cluster centroid, and
writes the overlays and ``explain.json``. The method (Grad-CAM with a similarity target, CNN
feature maps or ViT patch tokens) is described in :mod:`imgclust.explore._gradcam`.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImgclustError
from ._gradcam import _cnn_geometry as _cnn_geometry  # re-exported: tests check the CNN geometry here
from ._gradcam import gradcam, overlay

__all__ = ["ExplainItem", "ExplainResult", "gradcam", "overlay", "explain_run", "cluster_centroids"]


@dataclass
class ExplainItem:
    """One explained image: its heatmap at model-input resolution and where it peaks."""

    cluster: int
    index: int
    path: str
    similarity: float
    heatmap: np.ndarray  # (H, W) in [0, 1], model-input resolution
    peak: tuple[int, int]  # (x, y) in model-input pixels
    file: str = ""


@dataclass
class ExplainResult:
    """What `explain` produced: the method, one item per explained image, and where it wrote."""

    method: str
    items: list[ExplainItem] = field(default_factory=list)
    out_dir: Path | None = None


def cluster_centroids(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Normalised mean of each cluster's (normalised) member embeddings; noise (-1) excluded."""
    X = np.asarray(embeddings, np.float32)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    out = {}
    for c in sorted(set(np.asarray(labels).tolist()) - {-1}):
        m = X[np.asarray(labels) == c].mean(0)
        out[int(c)] = m / max(float(np.linalg.norm(m)), 1e-12)
    return out


def explain_run(run_dir: str | os.PathLike, *, per_cluster: int = 4, clusters: Sequence[int] | None = None,
                device: str = "auto", encoder=None, batch_size: int = 16, out_dir: str | os.PathLike | None = None,
                report: bool = True) -> ExplainResult:
    """Grad-CAM overlays for each cluster's prototypes (closest to the centre first).

    Writes ``explain/cluster<C>_<rank>_<index>.png`` and ``explain/explain.json`` under the run
    directory (the report shows the overlays next to the prototypes) and rebuilds the report.

    Args:
        run_dir: Run directory.
        per_cluster: Prototypes explained per cluster.
        clusters: Only these clusters (default: all but noise).
        device: Torch device.
        encoder: Override the run's encoder (same fingerprint required).
        batch_size: Images per forward/backward pass.
        out_dir: Output folder (default ``run_dir/explain``).
        report: Rebuild report.html afterwards.

    Returns:
        An :class:`ExplainResult` with one item per explained image.
    """
    from .._io import atomic_write_text
    from ..rundir import load_run, run_embeddings, run_encoder

    if per_cluster < 1:
        raise ImgclustError(f"--per-cluster must be at least 1 (got {per_cluster})")
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    emb = run_embeddings(run)
    cols = run["table"].to_pydict()
    labels = np.asarray(cols["cluster"], np.int64)
    cents = cluster_centroids(emb, labels)
    wanted = sorted(cents) if clusters is None else [int(c) for c in clusters]
    missing = [c for c in wanted if c not in cents]
    if missing:
        raise ImgclustError(f"no cluster {', '.join(map(str, missing))} in this run (clusters: "
                            f"{', '.join(map(str, sorted(cents)))})")
    enc = run_encoder(run, device, encoder)
    if not (hasattr(enc, "feature_map") or hasattr(enc, "image_features")):
        raise ImgclustError(f"explain needs a CNN or ViT-style encoder; this run used {enc.name}")
    method = "grad-cam (last conv block)" if hasattr(enc, "feature_map") else "grad-cam (patch tokens, last layer)"
    out = Path(out_dir) if out_dir is not None else run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("cluster*.png"):  # stale overlays of an earlier clustering
        old.unlink()

    jobs, skipped = _prototypes(cols, labels, wanted, per_cluster)
    result = ExplainResult(method=method, out_dir=out)
    for s in range(0, len(jobs), batch_size):
        result.items += _explain_batch(enc, jobs[s:s + batch_size], cents, cols["path"], out)
    meta = {"method": method, "target": "cosine similarity to the cluster centroid (original embeddings), "
                                        "embedding norm held constant",
            "encoder": enc.name, "per_cluster": per_cluster, "skipped": skipped,
            "items": [{"cluster": it.cluster, "index": it.index, "path": it.path, "similarity": it.similarity,
                       "file": it.file, "peak": list(it.peak), "size": list(it.heatmap.shape)}
                      for it in result.items]}
    atomic_write_text(out / "explain.json", json.dumps(meta, indent=2))
    if report and out_dir is None:
        from ..report import build_report

        build_report(run_dir)
    return result


def _prototypes(cols: dict, labels: np.ndarray, wanted: list[int], per_cluster: int) -> tuple[list, list[dict]]:
    """``(jobs, skipped)``: up to ``per_cluster`` readable members per cluster, closest to the centre first.

    Each job is ``(cluster, rank, index, image)``; unreadable images are skipped (with the reason)
    and the next-closest member takes their place.
    """
    from ..pipeline.sources import DecodeError, load_image

    dist = np.asarray([np.inf if v is None or not np.isfinite(v) else v for v in cols["distance"]], np.float64)
    jobs = []
    skipped = []
    for c in wanted:
        members = np.flatnonzero(labels == c)
        order = members[np.argsort(dist[members], kind="stable")]
        rank = 0
        for i in order:
            if rank >= per_cluster:
                break
            try:
                img = load_image(str(cols["path"][i]))
            except (DecodeError, OSError) as exc:
                skipped.append({"path": str(cols["path"][i]), "reason": getattr(exc, "reason", str(exc))})
                continue
            jobs.append((c, rank, int(i), img))
            rank += 1
    return jobs, skipped


def _explain_batch(enc, batch: list, cents: dict[int, np.ndarray], paths: list, out: Path) -> list[ExplainItem]:
    """Grad-CAM of one batch of jobs; each overlay written as ``cluster<C>_<rank>_<index>.png``."""
    from .._io import atomic_write_bytes

    items = []
    heat, sims, shown = gradcam(enc, [j[3] for j in batch], np.stack([cents[j[0]] for j in batch]))
    for (c, rank, i, _), h, sim, view in zip(batch, heat, sims, shown):
        name = f"cluster{c}_{rank}_{i}.png"
        buf = io.BytesIO()
        overlay(view, h).save(buf, format="PNG")
        atomic_write_bytes(out / name, buf.getvalue())
        py, px = np.unravel_index(int(h.argmax()), h.shape)
        items.append(ExplainItem(cluster=c, index=i, path=str(paths[i]), similarity=float(sim),
                                 heatmap=h, peak=(int(px), int(py)), file=name))
    return items
