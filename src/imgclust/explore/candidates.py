"""The SCAN seed's evaluation charts: cluster a query's top-n candidates for growing n and score each.

For every n of the sweep the n images of the run most similar to the query are clustered on
their own (:func:`imgclust.explore.neighbors.cluster_rows`, the same function as ``neighbors
--cluster``) and scored: ACC, NMI, ARI and top-5 neighbour accuracy against the labels when the
run has them, silhouette always. The table is written as CSV and JSON, and the chart as PNG.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .._io import atomic_write_json, atomic_write_text
from ..errors import ImgclustError
from ..rundir import load_run
from .neighbors import cluster_rows, neighbors

__all__ = ["SweepResult", "sweep_candidates", "parse_sweep", "DEFAULT_SWEEP", "SWEEP_COLUMNS"]

DEFAULT_SWEEP = tuple(range(50, 1001, 50))
SWEEP_COLUMNS = ("n", "k", "n_classes", "acc", "nmi", "ari", "top5", "silhouette", "seconds")


@dataclass
class SweepResult:
    """One row per candidate count: ``n``, ``k``, the scores (``None`` when not defined)."""

    query: str
    rows: list[dict]
    labelled: bool
    out_dir: Path
    csv: Path
    json: Path
    chart: Path | None

    def column(self, key: str) -> list:
        """One score over the sweep, in order of ``n``."""
        return [r.get(key) for r in self.rows]


def parse_sweep(text: str) -> list[int]:
    """``"50,100,...,1000"`` (an arithmetic run written with ``...``) or ``"50,100,300"`` -> sorted counts."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        if "..." in parts:
            i = parts.index("...")
            if i < 2 or i != len(parts) - 2:
                raise ValueError
            a, b, end = int(parts[i - 2]), int(parts[i - 1]), int(parts[i + 1])
            if b <= a:
                raise ValueError
            vals = [int(p) for p in parts[: i - 2]] + list(range(a, end + 1, b - a))
        else:
            vals = [int(p) for p in parts]
    except ValueError:
        raise ImgclustError(f"--sweep must be counts like 50,100,...,1000 or 50,200,500 (got {text!r})") from None
    if not vals or min(vals) < 2:
        raise ImgclustError(f"--sweep counts must be at least 2 (got {text!r})")
    return sorted(set(vals))


def _row(n: int, k: int, res, seconds: float) -> dict:
    m = res.metrics
    ext = m.get("external") or {}
    labels = {r.label for r in res.records if r.label is not None}
    return {"n": n, "k": k, "n_classes": len(labels) or None, "acc": ext.get("acc"), "nmi": ext.get("nmi"),
            "ari": ext.get("ari"), "top5": ext.get("top5_neighbor_acc"),
            "silhouette": (m.get("internal") or {}).get("silhouette"), "seconds": round(seconds, 4)}


def _write_table(rows: list[dict], out: Path, meta: dict) -> tuple[Path, Path]:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(SWEEP_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in SWEEP_COLUMNS})
    atomic_write_text(out / "sweep.csv", buf.getvalue())
    atomic_write_json(out / "sweep.json", {**meta, "rows": rows})
    return out / "sweep.csv", out / "sweep.json"


def sweep_candidates(run_dir: str | os.PathLike, image: str | os.PathLike, ns: Sequence[int] = DEFAULT_SWEEP, *,
                     k: int | None = None, method: str = "kmeans", out: str | os.PathLike | None = None,
                     random_state: int = 0, device: str = "auto", encoder=None, chart: bool = True) -> SweepResult:
    """Cluster the query's top-n candidates for every n in ``ns`` and score each clustering.

    Args:
        run_dir: Run directory.
        image: Query image (inside or outside the run).
        ns: Candidate counts (clipped to the run's size; duplicates dropped).
        k: Clusters per candidate set (default: the run's number of clusters, at most n - 1).
        method: Clusterer name.
        out: Where ``sweep.csv``, ``sweep.json`` and ``sweep.png`` go (default
            ``RUN_DIR/neighbors/<image stem>``).
        random_state: Seed of every clustering.
        device: Torch device for embedding the query.
        encoder: Override the run's encoder (same fingerprint).
        chart: Draw ``sweep.png``.

    Returns:
        A :class:`SweepResult`.
    """
    run = load_run(run_dir)
    n_run = run["table"].num_rows
    ns = sorted({min(int(n), n_run) for n in ns})
    if not ns or ns[0] < 3:
        raise ImgclustError(f"the sweep needs candidate counts of at least 3 (got {ns}; the run has {n_run} images)")
    k_run = k if k is not None else int(run["metrics"].get("n_clusters") or 0)
    if k_run < 2:
        raise ImgclustError("the run has fewer than 2 clusters; pass --cluster K for the sweep")
    found = neighbors(run_dir, image, top=ns[-1], device=device, encoder=encoder)
    idx = found.indices
    rows = []
    for n in ns:
        kk = min(k_run, n - 1)
        t = time.perf_counter()
        res = cluster_rows(run, idx[:n], kk, method=method, random_state=random_state)
        rows.append(_row(n, kk, res, time.perf_counter() - t))
    labelled = any(r["acc"] is not None for r in rows)
    out = Path(out) if out is not None else Path(run_dir) / "neighbors" / Path(image).stem
    out.mkdir(parents=True, exist_ok=True)
    meta = {"query": str(image), "run_dir": str(run_dir), "method": method, "k": k_run,
            "random_state": random_state, "labelled": labelled}
    csv_path, json_path = _write_table(rows, out, meta)
    png = None
    if chart:
        from ..report.plots import candidates_sweep

        png = candidates_sweep(rows, out / "sweep.png", title=f"{Path(image).name}: top-n candidates clustered "
                                                              f"({method}, k={k_run})")
    return SweepResult(query=str(image), rows=rows, labelled=labelled, out_dir=out, csv=csv_path, json=json_path,
                       chart=png)
