"""What :mod:`imgclust.explore.curate` writes to the run directory (Parquet, JSON, a removal list)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_write_json, atomic_write_table, atomic_write_text

__all__ = ["row_hashes", "write_duplicates", "write_outliers", "DUPLICATES_FILE", "OUTLIERS_FILE"]

DUPLICATES_FILE = "duplicates.parquet"
OUTLIERS_FILE = "outliers.parquet"


def row_hashes(cols: dict) -> list[str | None]:
    """Content hash of each row: the run's ``hash`` column, else hashed from the files now."""
    from ..pipeline.sources import file_hash

    n = len(cols["path"])
    given = cols.get("hash") or [None] * n
    out = []
    for p, h in zip(cols["path"], given):
        if h is None:
            try:
                h = file_hash(str(p))
            except OSError:
                h = None
        out.append(h)
    return out


def _parquet(path: Path, table) -> None:
    atomic_write_table(path, table)


def _common_columns(cols: dict, rows) -> dict:
    import pyarrow as pa

    out = {"index": pa.array(np.asarray(rows, np.int64)),
           "path": pa.array([str(cols["path"][i]) for i in rows], pa.string()),
           "cluster": pa.array([int(cols["cluster"][i]) for i in rows], pa.int64())}
    if "label" in cols:
        out["label"] = pa.array([cols["label"][i] for i in rows], pa.string())
    return out


def write_duplicates(run_dir: Path, cols: dict, res, settings: dict):
    """``duplicates.parquet`` (one row per grouped image, representative first), JSON summary, removal list.

    Returns:
        ``(table, parquet path)``.
    """
    import pyarrow as pa

    rows, group, kind, rep, sim, same = [], [], [], [], [], []
    for g in res.groups:
        order = sorted(range(g["size"]), key=lambda j: (g["members"][j] != g["representative"], -g["similarity"][j]))
        for j in order:
            rows.append(g["members"][j])
            group.append(g["group"])
            kind.append(g["kind"])
            rep.append(g["members"][j] == g["representative"])
            sim.append(g["similarity"][j])
            same.append(g["same_hash"][j])
    hashes = cols.get("hash")
    table = pa.table({"group": pa.array(group, pa.int64()), **_common_columns(cols, rows),
                      "kind": pa.array(kind, pa.string()), "representative": pa.array(rep, pa.bool_()),
                      "similarity": pa.array(np.asarray(sim, np.float32)),
                      "exact_copy_of_representative": pa.array(same, pa.bool_()),
                      **({"hash": pa.array([hashes[i] for i in rows], pa.string())} if hashes else {})})
    path = run_dir / DUPLICATES_FILE
    _parquet(path, table)
    remove = [str(cols["path"][i]) for i, r in zip(rows, rep) if not r]
    atomic_write_text(run_dir / "duplicates_remove.txt", "".join(p + "\n" for p in remove))
    n_exact = sum(g["kind"] == "exact" for g in res.groups)
    atomic_write_json(run_dir / "duplicates.json", {
        **settings, "n_images": res.n_images, "n_groups": res.n_groups, "n_exact_groups": n_exact,
        "n_near_groups": res.n_groups - n_exact, "n_in_groups": len(rows), "n_removable": res.n_removable,
        "groups_by_threshold": {str(t): c for t, c in res.by_threshold.items()}, "seconds": res.seconds})
    return table, path


def write_outliers(run_dir: Path, cols: dict, scores: dict, order: np.ndarray, n_flag: int, settings: dict):
    """``outliers.parquet``: every image, most outlying first, with both scores; and ``outliers.json``.

    Returns:
        ``(table, parquet path)``.
    """
    import pyarrow as pa

    rows = order.tolist()
    table = pa.table({"rank": pa.array(np.arange(1, len(rows) + 1, dtype=np.int64)), **_common_columns(cols, rows),
                      "score": pa.array(np.asarray((scores["lof"] if settings["method"] == "lof"
                                                    else scores["knn_distance"])[order], np.float32)),
                      "lof": pa.array(np.asarray(scores["lof"][order], np.float32)),
                      "knn_distance": pa.array(np.asarray(scores["knn_distance"][order], np.float32)),
                      "nearest": pa.array(np.asarray(scores["nearest"][order], np.int64)),
                      "nearest_similarity": pa.array(np.asarray(scores["nearest_similarity"][order], np.float32)),
                      "outlier": pa.array(np.arange(len(rows)) < n_flag)})
    path = run_dir / OUTLIERS_FILE
    _parquet(path, table)
    atomic_write_json(run_dir / "outliers.json", {**settings, "n_images": len(rows), "n_flagged": int(n_flag)})
    return table, path
