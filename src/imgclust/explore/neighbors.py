"""The images of a run most similar to a query image (the SCAN seed's candidate search).

Also a small clustering of just those candidates, with its own report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImgclustError
from ..pipeline.embed import encode_file
from ..rundir import load_run, run_embeddings, run_encoder, run_records

__all__ = ["Neighbor", "NeighborsResult", "neighbors", "cluster_candidates", "cluster_rows"]


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
        """Row indices of the neighbours in the run, most similar first."""
        return [n.index for n in self.items]


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
    from ..knn import knn_query

    if top < 1:
        raise ImgclustError(f"--top must be at least 1 (got {top})")
    if not Path(image).exists():
        raise ImgclustError(f"query image not found: {image}")
    run = load_run(run_dir)
    emb = run_embeddings(run)
    enc = run_encoder(run, device, encoder)
    q = encode_file(enc, image)
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
        The :class:`~imgclust.rundir.ClusteringResult` (saved to ``out``).
    """
    from ..report import write_run

    idx = result.indices
    if k < 2 or k > len(idx):
        raise ImgclustError(f"--cluster must be between 2 and the number of candidates ({len(idx)}), got {k}")
    res = cluster_rows(load_run(run_dir), idx, k, method=method, map=map, random_state=random_state,
                       extra={"from_run": str(run_dir), "query": result.query, "candidates": len(idx)})
    write_run(res, out, plots=report, report=report)
    return res


def cluster_rows(run: dict, idx: list[int], k: int, *, method: str = "kmeans", map: str = "pca",
                 random_state: int = 0, extra: dict | None = None):
    """Cluster the rows ``idx`` of a loaded run on their own (PCA to at most 50-D, then ``method``).

    What :func:`cluster_candidates` writes and each point of the candidates sweep
    (:func:`imgclust.explore.candidates.sweep_candidates`) scores: the same function, so a sweep
    point equals the direct clustering of those images.
    """
    from ..analyze import cluster_embeddings

    emb = run_embeddings(run)
    cols = run["table"].to_pydict()
    cfg = dict(run["run"].get("config", {}) or {})
    cfg.update(extra or {})
    hashes = [cols["hash"][i] for i in idx] if "hash" in cols else None
    return cluster_embeddings(emb[idx], run_records(run, idx), reduce="pca", n_components=min(50, len(idx) - 1),
                              map=map, method=method, k=k, random_state=random_state, hashes=hashes, config=cfg)
