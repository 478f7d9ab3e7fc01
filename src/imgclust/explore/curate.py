"""Curation of a finished run: exact and near duplicates, and outliers (what fastdup/FiftyOne users expect).

Both work from the run's ``embeddings.npy`` and the faiss kNN of :mod:`imgclust.knn`: memory
grows as N x k, never N x N.

- :func:`find_duplicates`: files with the same content hash are exact duplicates; images whose
  cosine similarity is at least ``threshold`` (among each image's ``k`` nearest neighbours) are
  near duplicates, and so are images whose perceptual hashes agree (:data:`PHASH_RULES`,
  :mod:`imgclust.explore._phash`). Linked images form a group (connected components, so A~B
  and B~C put A, B, C together) with one representative to keep. Written to
  ``duplicates.parquet`` (one row per grouped image), ``duplicates.json`` (summary, groups per
  threshold) and ``duplicates_remove.txt`` (the non-representatives, one path per line).
- :func:`find_outliers`: the mean cosine distance to the ``k`` nearest neighbours (global
  sparsity) and the local outlier factor computed from the same neighbours (density relative to
  the neighbours' own density: an image slightly off a very tight group scores high even when a
  loose group elsewhere is sparser). Written to ``outliers.parquet`` ranked, and ``outliers.json``.

The report (``report.html``) shows both as a "Curation" section, rebuilt by each command.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImgclustError
from ..rundir import load_run, run_embeddings
from ._curate_io import row_hashes, write_duplicates, write_outliers

__all__ = ["DuplicatesResult", "OutliersResult", "find_duplicates", "find_outliers", "duplicate_groups",
           "outlier_scores", "KEEP", "DEFAULT_THRESHOLD", "PHASH_RULES"]

KEEP = ("central", "largest", "first")
_SCAN_THRESHOLDS = (0.8, 0.85, 0.9, 0.95, 0.98, 0.995)
DEFAULT_THRESHOLD = 0.9


@dataclass
class DuplicatesResult:
    """Duplicate groups of a run; ``table`` has one row per image that is in a group."""

    table: object  # pyarrow.Table
    groups: list[dict]
    threshold: float
    n_images: int
    by_threshold: dict = field(default_factory=dict)
    seconds: float = 0.0
    path: Path | None = None

    @property
    def n_groups(self) -> int:
        """Number of groups (exact and near)."""
        return len(self.groups)

    @property
    def n_removable(self) -> int:
        """Images that are not their group's representative (what a de-duplication removes)."""
        return sum(g["size"] - 1 for g in self.groups)

    def to_pandas(self):
        """:attr:`table` as a pandas DataFrame."""
        return self.table.to_pandas()


@dataclass
class OutliersResult:
    """Outlier scores of every image of a run, most outlying first (``table``)."""

    table: object  # pyarrow.Table
    method: str
    k: int
    n_flagged: int
    seconds: float = 0.0
    path: Path | None = None

    @property
    def indices(self) -> list[int]:
        """Run row indices, most outlying first."""
        return self.table.column("index").to_pylist()

    def to_pandas(self):
        """:attr:`table` as a pandas DataFrame."""
        return self.table.to_pandas()


def _unique_rows(hashes: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: first row of each distinct hash (rows without a hash are distinct)."""
    keys = [h if h is not None else f"\0row{i}" for i, h in enumerate(hashes)]
    _, first, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_index=True,
                                  return_inverse=True)
    return first, inverse.reshape(-1)


def _components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Connected component id of each of ``n`` nodes given undirected edges ``rows``-``cols``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    return connected_components(g, directed=False)[1]


# pHash links: within ``radius`` bits (cosine >= ``floor``), or ``confirm_bits`` at cosine >= ``confirm_cosine``
PHASH_RULES = {"radius": 8, "floor": 0.5, "confirm_bits": 16, "confirm_cosine": 0.8}


def _phash_links(Xu: np.ndarray, phash, first: np.ndarray, src: np.ndarray, idx: np.ndarray, sims: np.ndarray):
    """``(extra_ok, rows, cols)``: kNN pairs a pHash confirms, and pHash-neighbour pairs (distinct rows)."""
    empty = np.zeros(0, np.int64)
    if phash is None or not len(first):
        return np.zeros(idx.size, bool), empty, empty
    from ._phash import hamming, hamming_neighbors

    codes, valid = np.asarray(phash[0])[first], np.asarray(phash[1], bool)[first]
    r = PHASH_RULES
    dst = np.where(idx.ravel() >= 0, idx.ravel(), 0).astype(np.int64)
    both = valid[src] & valid[dst]
    close = np.zeros(idx.size, bool)
    close[both] = hamming(codes, src[both], dst[both]) <= r["confirm_bits"]
    extra_ok = close & (sims.ravel() >= r["confirm_cosine"])
    hr, hc = hamming_neighbors(codes, valid, r["radius"])
    Xn = Xu / np.maximum(np.linalg.norm(Xu, axis=1, keepdims=True), 1e-12)
    keep = np.einsum("ij,ij->i", Xn[hr], Xn[hc]) >= r["floor"] if len(hr) else np.zeros(0, bool)
    return extra_ok, hr[keep], hc[keep]


def duplicate_groups(X: np.ndarray, hashes: list[str | None] | None = None, *, threshold: float = DEFAULT_THRESHOLD,
                     k: int = 10, scan: tuple[float, ...] = (), phash=None) -> tuple[np.ndarray, dict]:
    """Group rows that are exact (same hash) or near (cosine >= ``threshold``, or by pHash) duplicates.

    With ``phash`` (``(codes, valid)`` from :func:`imgclust.explore._phash.phashes`), two more links
    (:data:`PHASH_RULES`): pHashes within ``radius`` bits (and cosine >= ``floor``), or within
    ``confirm_bits`` bits when the cosine is at least ``confirm_cosine``. On CIFAR-10 this finds JPEG
    q30-q50 and 0.75x copies that the cosine alone misses, with no distinct pair linked.

    Args:
        X: (N, D) embeddings.
        hashes: Content hash per row (equal hashes are exact duplicates); ``None`` = all distinct.
        threshold: Cosine similarity at or above which two images are near duplicates.
        k: Neighbours searched per distinct image (faiss; N x k memory).
        scan: Other thresholds to count groups at (from the same neighbour search).
        phash: Optional perceptual hashes of the rows, ``(codes (N, 8) uint8, valid (N,) bool)``.

    Returns:
        ``(group, counts)``: per row its group id (``-1`` when it has no duplicate; groups are
        numbered by decreasing size), and ``{threshold: number of groups}`` for ``scan``.
    """
    from ..knn import knn

    X = np.asarray(X, np.float32)
    n = len(X)
    hashes = list(hashes) if hashes is not None else [None] * n
    first, inverse = _unique_rows(hashes)
    m = len(first)
    idx = sims = np.zeros((m, 0))
    if m >= 2 and k >= 1:
        idx, sims = knn(X[first], k)
    src = np.repeat(np.arange(m), idx.shape[1])
    extra_ok, hr, hc = _phash_links(X[first], phash, first, src, idx, sims)

    def groups_at(t: float) -> np.ndarray:
        ok = ((sims.ravel() >= t) | extra_ok) & (idx.ravel() >= 0)
        rows, cols = np.concatenate([src[ok], hr]), np.concatenate([idx.ravel()[ok], hc])
        comp_u = _components(m, rows, cols) if m else np.zeros(0, np.int64)
        comp = comp_u[inverse]
        ids, counts = np.unique(comp, return_counts=True)
        big = ids[counts >= 2][np.argsort(-counts[counts >= 2], kind="stable")]
        remap = np.full(max(comp.max() + 1, 1) if n else 1, -1, np.int64)
        remap[big] = np.arange(len(big))
        return remap[comp]

    counts = {float(t): int(groups_at(t).max() + 1) if n else 0 for t in scan}
    return groups_at(threshold), counts


def _representative(members: np.ndarray, X: np.ndarray, keep: str, pixels) -> int:
    """The member to keep: most central (highest mean cosine to the others), most pixels, or first."""
    if keep == "first":
        return int(members.min())
    if keep == "largest":
        size = [pixels(int(i)) for i in members]
        return int(members[max(range(len(members)), key=lambda j: (size[j], -members[j]))])
    # Mean similarity to the other members is x_i . mean(x) up to a constant: O(g D), no g x g matrix.
    Xm = X[members]
    Xm = Xm / np.maximum(np.linalg.norm(Xm, axis=1, keepdims=True), 1e-12)
    return int(members[int(np.argmax(Xm @ Xm.mean(0)))])


def _groups(group: np.ndarray, X: np.ndarray, hashes: list, keep: str, pixels) -> list[dict]:
    """One dict per group: id, kind (exact/near), representative, members (rows), similarities."""
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    order = np.argsort(group, kind="stable")
    sorted_g = group[order]
    bounds = np.flatnonzero(np.diff(sorted_g)) + 1
    out = []
    for members in np.split(order, bounds):
        if not len(members) or group[members[0]] < 0:
            continue
        rep = _representative(members, Xn, keep, pixels)
        hs = {hashes[i] for i in members}
        exact = len(hs) == 1 and None not in hs
        sim = Xn[members] @ Xn[rep]
        out.append({"group": int(group[members[0]]), "kind": "exact" if exact else "near", "representative": rep,
                    "members": [int(i) for i in members], "size": int(len(members)),
                    "similarity": [float(s) for s in sim], "min_similarity": float(sim.min()),
                    "same_hash": [hashes[i] is not None and hashes[i] == hashes[rep] for i in members]})
    return sorted(out, key=lambda g: g["group"])


def _pixel_count(paths: list[str]):
    def pixels(i: int) -> tuple[int, int]:
        from PIL import Image

        try:
            with Image.open(paths[i]) as im:
                return im.size[0] * im.size[1], os.path.getsize(paths[i])
        except OSError:
            return 0, 0
    return pixels


def find_duplicates(run_dir: str | os.PathLike, *, threshold: float = DEFAULT_THRESHOLD, k: int = 10,
                    keep: str = "central", exact_only: bool = False, phash: bool = True,
                    report: bool = True) -> DuplicatesResult:
    """Exact (same content hash) and near (cosine >= ``threshold``) duplicates of a run's images.

    Args:
        run_dir: Run directory (``embeddings.npy`` and ``clusters.parquet``).
        threshold: Cosine similarity of the run's embeddings at or above which two images are near
            duplicates. 0.9 for EfficientNet-Lite0: on CIFAR-10 no two distinct test images reach it
            (the closest pair is at 0.889) while re-saved, upscaled and 1-pixel-cropped copies stay
            above it (``benchmarks/curate.py``); other encoders may want another value.
        k: Neighbours searched per image; a group still grows past ``k`` through chains.
        keep: Representative of each group: ``central`` (most similar to the rest), ``largest``
            (most pixels, then bytes) or ``first`` (first in the run's order).
        exact_only: Only content-hash duplicates (no similarity search).
        phash: Also link images by a perceptual hash of their pixels (:data:`PHASH_RULES`), which
            catches heavy re-encodes and downscales; needs the image files (unreadable ones are left
            to the cosine test).
        report: Rebuild ``report.html`` with the duplicate groups.

    Returns:
        A :class:`DuplicatesResult`; also writes ``duplicates.parquet``, ``duplicates.json`` and
        ``duplicates_remove.txt`` in the run directory.
    """
    if not 0.0 < threshold <= 1.0:
        raise ImgclustError(f"--threshold must be in (0, 1] (got {threshold})")
    if keep not in KEEP:
        raise ImgclustError(f"--keep must be one of {', '.join(KEEP)} (got {keep!r})")
    if k < 1:
        raise ImgclustError(f"--k must be at least 1 (got {k})")
    t0 = time.perf_counter()
    run = load_run(run_dir)
    X = run_embeddings(run)
    cols = run["table"].to_pydict()
    paths = [str(p) for p in cols["path"]]
    hashes = row_hashes(cols)
    codes = None
    if phash and not exact_only:
        from ._phash import phashes

        codes = phashes(paths)
    group, counts = duplicate_groups(X, hashes, threshold=threshold, k=0 if exact_only else k,
                                     scan=() if exact_only else _SCAN_THRESHOLDS, phash=codes)
    groups = _groups(group, X, hashes, keep, _pixel_count(paths))
    seconds = time.perf_counter() - t0
    res = DuplicatesResult(table=None, groups=groups, threshold=float(threshold), n_images=len(paths),
                           by_threshold=counts, seconds=seconds)
    settings = {"threshold": float(threshold), "k": int(k), "keep": keep, "exact_only": bool(exact_only),
                "phash": dict(PHASH_RULES) if codes is not None else None}
    res.table, res.path = write_duplicates(Path(run_dir), cols, res, settings)
    if report:
        _rebuild_report(run_dir)
    return res


def outlier_scores(X: np.ndarray, k: int = 10, hashes: list[str | None] | None = None) -> dict[str, np.ndarray]:
    """kNN-distance and local-outlier-factor scores of every row (higher = more outlying).

    Exact duplicates (same hash) are scored once, so a duplicated image does not look infinitely
    dense to its neighbours.

    Returns:
        ``{"knn_distance", "lof", "nearest", "nearest_similarity"}``, each of length N.
    """
    from ..knn import knn

    X = np.asarray(X, np.float32)
    first, inverse = _unique_rows(list(hashes) if hashes is not None else [None] * len(X))
    m = len(first)
    if m < 3:
        raise ImgclustError(f"outlier scores need at least 3 distinct images (got {m})")
    idx, sims = knn(X[first], min(k, m - 1))
    d = np.clip(1.0 - sims.astype(np.float64), 0.0, 2.0)
    kdist = d[:, -1]
    reach = np.maximum(d, kdist[idx])
    lrd = 1.0 / np.maximum(reach.mean(1), 1e-6)
    lof = lrd[idx].mean(1) / lrd
    return {"knn_distance": d.mean(1)[inverse], "lof": lof[inverse],
            "nearest": first[idx[:, 0]][inverse], "nearest_similarity": sims[:, 0].astype(np.float64)[inverse]}


def find_outliers(run_dir: str | os.PathLike, *, k: int = 10, method: str = "lof", contamination: float = 0.01,
                  report: bool = True) -> OutliersResult:
    """Score every image of a run by how far it sits from its nearest neighbours; rank them.

    Args:
        run_dir: Run directory.
        k: Neighbours per image for both scores.
        method: Ranking score: ``lof`` (local outlier factor: sparse relative to its neighbours'
            density) or ``knn`` (mean cosine distance to the ``k`` nearest neighbours).
        contamination: Share of images flagged as outliers (the top of the ranking).
        report: Rebuild ``report.html`` with the ranked gallery.

    Returns:
        An :class:`OutliersResult`; also writes ``outliers.parquet`` (every image, ranked) and
        ``outliers.json`` in the run directory.
    """
    if method not in ("lof", "knn"):
        raise ImgclustError(f"--method must be lof or knn (got {method!r})")
    if not 0.0 <= contamination <= 0.5:
        raise ImgclustError(f"--contamination must be between 0 and 0.5 (got {contamination})")
    if k < 1:
        raise ImgclustError(f"--k must be at least 1 (got {k})")
    t0 = time.perf_counter()
    run = load_run(run_dir)
    X = run_embeddings(run)
    cols = run["table"].to_pydict()
    scores = outlier_scores(X, k, row_hashes(cols))
    key = "lof" if method == "lof" else "knn_distance"
    order = np.lexsort((np.arange(len(X)), -scores[key]))
    n_flag = int(np.ceil(contamination * len(X)))
    seconds = time.perf_counter() - t0
    settings = {"k": int(k), "method": method, "contamination": float(contamination), "seconds": seconds}
    table, path = write_outliers(Path(run_dir), cols, scores, order, n_flag, settings)
    if report:
        _rebuild_report(run_dir)
    return OutliersResult(table=table, method=method, k=int(k), n_flagged=n_flag, seconds=seconds, path=path)


def _rebuild_report(run_dir) -> None:
    from ..report import build_report

    build_report(run_dir)
