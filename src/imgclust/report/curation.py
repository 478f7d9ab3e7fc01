"""The report's "Curation" section: what ``imgclust duplicates`` and ``imgclust outliers`` left.

Read from ``duplicates.parquet`` / ``outliers.parquet`` and their JSON summaries.

Images are referred to by row index, so the page reuses the run's thumbnails; large runs show
the biggest groups and the top of the ranking (the Parquet files hold everything). A sampled
page (past the report's point cap) adds the rows shown here to its sample
(:func:`curation_rows`) and renumbers them to page positions (:func:`remap_curation`), so every
member and outlier shown has its thumbnail, while the counts stay those of the whole run.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["curation_payload", "curation_rows", "remap_curation", "MAX_GROUPS", "MAX_MEMBERS", "MAX_OUTLIERS"]

MAX_GROUPS = 200
MAX_MEMBERS = 24
MAX_OUTLIERS = 120


def _summary(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _rows(path: Path, n: int, columns: list[str]) -> dict | None:
    """Columns of a curation Parquet file, or None when absent, unreadable or from another run."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    try:
        cols = pq.read_table(path).to_pydict()
    except (OSError, ValueError):
        return None
    if any(c not in cols for c in columns) or any(not 0 <= int(i) < n for i in cols["index"]):
        return None  # stale: written before images were added or removed
    return cols


def _duplicates(run_dir: Path, n: int) -> dict | None:
    cols = _rows(run_dir / "duplicates.parquet", n, ["group", "index", "kind", "representative", "similarity"])
    if cols is None:
        return None
    groups: dict[int, dict] = {}
    for g, i, kind, rep, sim in zip(cols["group"], cols["index"], cols["kind"], cols["representative"],
                                    cols["similarity"]):
        item = groups.setdefault(int(g), {"group": int(g), "kind": str(kind), "size": 0, "members": [], "sim": []})
        item["size"] += 1
        if len(item["members"]) < MAX_MEMBERS:  # the representative comes first in the file
            item["members"].append(int(i))
            item["sim"].append(None if sim is None else round(float(sim), 4))
            if rep:
                item["representative"] = int(i)
    ordered = sorted(groups.values(), key=lambda d: (-d["size"], d["group"]))
    s = _summary(run_dir / "duplicates.json")
    keep = ("threshold", "k", "keep", "n_groups", "n_exact_groups", "n_near_groups", "n_removable", "n_in_groups",
            "groups_by_threshold", "seconds")
    return {"summary": {k: s[k] for k in keep if k in s}, "groups": ordered[:MAX_GROUPS],
            "n_groups": len(ordered)}


def _outliers(run_dir: Path, n: int) -> dict | None:
    cols = _rows(run_dir / "outliers.parquet", n, ["rank", "index", "score", "lof", "knn_distance", "outlier"])
    if cols is None:
        return None
    top = [{"i": int(i), "rank": int(r), "lof": round(float(lof), 4), "knn": round(float(kd), 4),
            "flag": bool(f)}
           for i, r, lof, kd, f in zip(cols["index"], cols["rank"], cols["lof"], cols["knn_distance"],
                                       cols["outlier"])][:MAX_OUTLIERS]
    s = _summary(run_dir / "outliers.json")
    return {"summary": {k: s[k] for k in ("k", "method", "contamination", "n_flagged", "seconds") if k in s},
            "top": top}


def curation_payload(run_dir: Path, n: int) -> dict | None:
    """``{"duplicates", "outliers"}`` for the page (each None when its command has not run), or None."""
    dup, out = _duplicates(run_dir, n), _outliers(run_dir, n)
    return None if dup is None and out is None else {"duplicates": dup, "outliers": out}


def curation_rows(payload: dict | None) -> list[int]:
    """The run rows the curation section shows (group members, outliers), sorted."""
    if not payload:
        return []
    dup, out = payload.get("duplicates") or {}, payload.get("outliers") or {}
    rows = {i for g in dup.get("groups", []) for i in g["members"]} | {o["i"] for o in out.get("top", [])}
    return sorted(rows)


def remap_curation(payload: dict | None, pos: dict[int, int]) -> dict | None:
    """``payload`` with run rows renumbered to page positions (``pos``: run row -> position)."""
    if not payload:
        return payload
    dup, out = payload.get("duplicates"), payload.get("outliers")
    if dup is not None:
        groups = [dict(g, members=[pos[i] for i in g["members"]],
                       **({"representative": pos[g["representative"]]} if "representative" in g else {}))
                  for g in dup["groups"]]
        dup = dict(dup, groups=groups)
    if out is not None:
        out = dict(out, top=[dict(o, i=pos[o["i"]]) for o in out["top"]])
    return {"duplicates": dup, "outliers": out}
