"""Writing cluster names back into a run directory: table, metrics, labelled plots, report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["save_names"]


def _write_names(run_dir: Path, table, labels: np.ndarray, best: dict[int, str]) -> None:
    import pyarrow as pa

    from .._io import atomic_write_table

    col = pa.array([best.get(int(c)) for c in labels], pa.string())
    if "cluster_name" in table.column_names:
        table = table.set_column(table.column_names.index("cluster_name"), "cluster_name", col)
    else:
        table = table.append_column("cluster_name", col)
    atomic_write_table(run_dir / "clusters.parquet", table, csv=True)


def _redraw_plots(run_dir: Path, run: dict, table, labels: np.ndarray, best: dict[int, str]) -> None:
    """Re-draw the two plots that label clusters, now with their names."""
    from ..report.plots import cluster_map, example_grid
    from ..report.summary import cluster_examples

    plots = run_dir / "plots"
    cols = table.to_pydict()
    cfg = run["run"].get("config", {})
    n_clusters = len(set(labels.tolist()) - {-1})
    coords = np.stack([np.asarray(cols["x"], np.float32), np.asarray(cols["y"], np.float32)], 1)
    dist = np.asarray([np.nan if v is None else v for v in cols["distance"]], np.float64)
    cluster_map(coords, labels, plots / "cluster_map.png",
                title=f"{cfg.get('encoder', '')} - {cfg.get('method')} (k={n_clusters})", names=best)
    if (plots / "examples.png").exists():
        example_grid(cols["path"], cluster_examples(labels, dist, 8), plots / "examples.png", names=best)


def save_names(run_dir: Path, run: dict, table, labels: np.ndarray, result: dict[int, list[tuple[str, float]]],
               info: dict, report: bool) -> None:
    """Write the best names into the table, metrics.json, the plots and (when asked) the report."""
    from .._io import atomic_write_text

    best = {c: names[0][0] for c, names in result.items() if names}
    _write_names(run_dir, table, labels, best)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics["cluster_names"] = {str(c): n for c, n in best.items()}
    metrics["cluster_name_scores"] = {
        str(c): [{"name": n, "score": round(s, 6) if math.isfinite(s) else None} for n, s in names]
        for c, names in result.items()}
    metrics["naming"] = info
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2))
    if (run_dir / "plots" / "cluster_map.png").exists():
        _redraw_plots(run_dir, run, table, labels, best)
    if report and (run_dir / "report.html").exists():
        from ..report import build_report

        build_report(run_dir)
