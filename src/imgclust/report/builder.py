"""Build ``report.html`` from a run directory: one self-contained, offline, interactive page.

Everything the page needs is inlined: the CSS, the script (``report.js``), the PNG figures and
one small JPEG thumbnail per image. Data goes in as JSON inside ``<script type="application/json">``
blocks with ``<``, ``>`` and ``&`` escaped, and the script inserts user text (paths, labels,
captions, cluster names) with ``textContent`` only, so a file named
``<img src=x onerror=alert(1)>.png`` is shown as text. A Content-Security-Policy allows only the
page's own script (by hash) and ``data:`` images: no network, no injected handlers.

Besides the run itself the page shows what later commands added to the run directory: cluster
names with their vote shares (``imgclust name``), the encoder comparison (``compare.json`` from
``imgclust compare``, linked to the other encoders' reports by relative paths), the loss curve of
a trained head (SCAN, TEMI) and the linear-probe reference (``imgclust probe``).

The map, the galleries and the neighbour view all refer to an image by its row index, and
thumbnails are stored once per distinct file (by content hash), so a 10,000-image report stays
a few tens of MB.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import jsonable
from ..limits import REPORT_MAX_POINTS
from ..rundir import load_run
from ..sampling import stratified_sample
from .curation import curation_payload, curation_rows, remap_curation
from .experiments import augment_payload, robustness_payload
from .sections import (
    animation_payload,
    compare_payload,
    confusion_view,
    explain_payload,
    finite,
    name_scores,
    naming_payload,
    probe_payload,
    training_payload,
)
from .thumbs import b64_file, make_thumbnails

__all__ = ["build_report", "make_thumbnails", "script_json", "report_payload"]

_HERE = Path(__file__).resolve().parent


def script_json(obj: Any) -> str:
    r"""JSON safe to place inside a ``<script>`` element: ``<``, ``>``, ``&`` become ``\\u003c`` etc.

    ``</script>`` or ``<!--`` in user strings can then never end or change the script block,
    and ``JSON.parse`` turns the escapes back into the original characters.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _quantise(v: np.ndarray) -> tuple[list[int], float]:
    """Map coordinates as integers 0..10000 inside their bounding box (small, and enough for a screen)."""
    ok = np.isfinite(v)
    lo, hi = (float(v[ok].min()), float(v[ok].max())) if ok.any() else (0.0, 1.0)
    span = hi - lo or 1.0
    return np.where(ok, np.round((v - lo) / span * 10000), 5000).astype(int).tolist(), span


def _neighbours(emb, n: int, n_neighbors: int) -> tuple[int, list[int], list[int]]:
    """``(k, flat indices, flat similarities x 1000)`` of each image's nearest neighbours (cosine)."""
    from ..knn import knn

    if emb is None or len(emb) != n or n < 2:
        return 0, [], []
    idx, sims = knn(emb, min(n_neighbors, n - 1))
    return (int(idx.shape[1]), idx.astype(int).ravel().tolist(),
            np.round(np.clip(sims, -1, 1) * 1000).astype(int).ravel().tolist())


def _cluster_names(metrics: dict, cols: dict, labels: np.ndarray) -> dict[int, str]:
    names = metrics.get("cluster_names")
    names = {int(c): str(v) for c, v in names.items()} if isinstance(names, dict) else {}
    if not names and "cluster_name" in cols:  # names in the table only (e.g. metrics.json rewritten)
        for c, v in zip(labels.tolist(), cols["cluster_name"]):
            if v is not None and c != -1:
                names.setdefault(int(c), str(v))
    return names


def _clusters(emb, labels: np.ndarray, dist: np.ndarray, true, names: dict, metrics: dict) -> list[dict]:
    """One gallery entry per cluster: members closest first, size, cohesion, names, label purity."""
    from .summary import cluster_stats

    n = len(labels)
    stats = {s["cluster"]: s for s in cluster_stats(emb, labels, dist)} if emb is not None and len(emb) == n else {}
    scores = name_scores(metrics)
    clusters = []
    for c in sorted(set(labels.tolist()), key=lambda v: (v == -1, v)):
        members = np.flatnonzero(labels == c)
        d = np.nan_to_num(dist[members], nan=np.inf)
        item = {"id": int(c), "name": names.get(int(c)), "size": int(len(members)),
                "order": members[np.argsort(d, kind="stable")].tolist(),
                "cohesion": finite([stats.get(int(c), {}).get("cohesion")])[0],
                "mean_distance": finite([stats.get(int(c), {}).get("mean_distance")])[0]}
        if int(c) in scores:
            item["name_scores"] = scores[int(c)]
        if true is not None:
            vals, counts = np.unique([str(true[i]) for i in members if true[i] is not None], return_counts=True)
            if len(vals):
                top = int(counts.argmax())
                item["top_label"] = str(vals[top])
                item["purity"] = round(float(counts[top] / len(members)), 4)
        clusters.append(item)
    return clusters


def _shown(cols: dict, emb, max_points: int, extra: list[int] = ()) -> tuple[dict, Any, np.ndarray | None,
                                                                             dict[int, int]]:
    """The rows the page draws: all, or a stratified sample past ``max_points`` (every cluster shown).

    ``extra`` rows (those the curation section shows) are added to a sample.
    Returns ``(columns, embeddings, rows or None, whole-run size per cluster)``.
    """
    labels = np.asarray(cols["cluster"], np.int64)
    ids, counts = np.unique(labels, return_counts=True)
    sizes = {int(c): int(m) for c, m in zip(ids, counts)}
    if len(labels) <= max_points:
        return cols, emb, None, sizes
    rows = np.union1d(stratified_sample(labels, max_points, random_state=0), np.asarray(extra, np.int64))
    sub = {key: ([v[i] for i in rows] if isinstance(v, list) else v) for key, v in cols.items()}
    if emb is not None and len(emb) == len(labels):
        emb = np.asarray(emb[rows], np.float32)  # gathered from the memory map: only the shown rows
    return sub, emb, rows, sizes


def _whole_sizes(clusters: list[dict], sizes: dict[int, int]) -> list[dict]:
    for c in clusters:
        c["shown"], c["size"] = c["size"], sizes.get(c["id"], c["size"])
    return clusters


def _remap(by_row: dict, rows: np.ndarray | None) -> dict:
    """Per-row entries keyed by run row -> keyed by position among the shown rows (dropped if not shown)."""
    if rows is None:
        return by_row
    pos = {int(r): i for i, r in enumerate(rows)}
    return {str(pos[int(i)]): v for i, v in by_row.items() if int(i) in pos}
def _flags(v):
    return [bool(x) for x in v] if v is not None and any(v) else None


def _optional(v):
    return [None if x is None else str(x) for x in v] if v is not None else None


def report_payload(run_dir, *, thumb_size: int = 64, thumb_quality: int = 70, n_neighbors: int = 10,
                   max_points: int = REPORT_MAX_POINTS) -> tuple[dict, list[str | None]]:
    """Everything the page shows, as JSON-able data: ``(data, thumbnails)``.

    Args:
        run_dir: Run directory (see :func:`imgclust.rundir.load_run`).
        thumb_size: Thumbnail side in pixels.
        thumb_quality: Thumbnail JPEG quality.
        n_neighbors: Precomputed nearest neighbours per image (cosine, original embeddings).
        max_points: Past this many images the page shows a stratified sample of this many (every
            cluster represented; galleries, neighbours and thumbnails among those), with the counts
            of the whole run (``n_total``, each cluster's ``size``; ``shown`` per cluster).
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    n_total = run["table"].num_rows
    curation = curation_payload(run_dir, n_total)  # in run rows; renumbered below on a sampled page
    cols, emb, rows, sizes = _shown(run["table"].to_pydict(), run["embeddings"], max_points, curation_rows(curation))
    paths = [str(p) for p in cols["path"]]
    n = len(paths)
    labels = np.asarray(cols["cluster"], np.int64)
    dist = np.asarray([np.nan if v is None else v for v in cols["distance"]], np.float64)
    conf = np.asarray([np.nan if v is None else v for v in cols["confidence"]], np.float64)
    metrics, info = run["metrics"], run["run"]
    cfg = info.get("config", {}) or {}
    thumbs, tindex = make_thumbnails(paths, cols.get("hash"), size=thumb_size, quality=thumb_quality)
    qx, sx = _quantise(np.asarray(cols["x"], np.float64))
    qy, sy = _quantise(np.asarray(cols["y"], np.float64))
    k, nn_idx, nn_sim = _neighbours(emb, n, n_neighbors)
    names = _cluster_names(metrics, cols, labels)
    plots = {p.stem: b64_file(p) for p in sorted((run_dir / "plots").glob("*.png"))} \
        if (run_dir / "plots").is_dir() else {}
    assigned = cols.get("assigned")
    data = {
        "n": n, "paths": paths, "cluster": labels.astype(int).tolist(),
        "x": qx, "y": qy, "aspect": round(sy / sx, 6) if sx else 1.0,
        "distance": finite(dist), "confidence": finite(conf, 3),
        "label": _optional(cols.get("label")), "caption": _optional(cols.get("caption")),
        "assigned": _flags(assigned),
        "thumb": tindex if len(set(tindex)) != len(tindex) else None,
        "k": k, "nn": nn_idx, "nn_sim": nn_sim,
        "clusters": _whole_sizes(_clusters(emb, labels, dist, cols.get("label"), names, metrics), sizes),
        "n_total": n_total, "rows": rows.tolist() if rows is not None else None,
        "names": {str(c): v for c, v in names.items()},
        "metrics": jsonable({key: metrics.get(key) for key in ("n_images", "n_clusters", "n_noise", "internal",
                                                               "external", "internal_space", "seeds",
                                                               "n_labelled", "n_assigned")}),
        "confusion": confusion_view(metrics.get("confusion")),
        "k_sweep": jsonable(metrics.get("k_sweep") or info.get("k_sweep")),
        "skipped": jsonable(metrics.get("skipped") or []),
        "config": jsonable(cfg), "timings": jsonable(info.get("timings") or {}),
        "versions": jsonable(info.get("versions") or {}),
        "assign_log": jsonable(info.get("assign") or None),
        "plots": plots,
        "explain": _remap(explain_payload(run_dir, n_total), rows),
        "animations": animation_payload(run_dir),
        "naming": naming_payload(metrics),
        "training": training_payload(metrics),
        "probe": probe_payload(metrics),
        "compare": compare_payload(run_dir, cfg.get("encoder")),
        "robustness": robustness_payload(run_dir),
        "augment": augment_payload(metrics),
        "augmented": _flags(cols.get("augmented")),
        "source": _optional(cols.get("source")) if _flags(cols.get("augmented")) else None,
        "curation": curation if rows is None else remap_curation(curation, {int(r): i for i, r in enumerate(rows)}),
        "thumb_size": thumb_size,
    }
    return data, thumbs


def build_report(run_dir, out: str | os.PathLike | None = None, *, title: str | None = None,
                 thumb_size: int = 64, thumb_quality: int = 70, n_neighbors: int = 10,
                 max_points: int = REPORT_MAX_POINTS) -> Path:
    """(Re)build the interactive ``report.html`` of a run directory.

    Args:
        run_dir: Run directory.
        out: Output file (default ``run_dir/report.html``).
        title: Page title (default: the run directory's name).
        thumb_size: Thumbnail side in pixels.
        thumb_quality: Thumbnail JPEG quality.
        n_neighbors: Nearest neighbours precomputed per image.
        max_points: Images drawn at most (a stratified sample past it, see :func:`report_payload`).

    Returns:
        The path of the written report.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from .._io import atomic_write_text

    run_dir = Path(run_dir)
    data, thumbs = report_payload(run_dir, thumb_size=thumb_size, thumb_quality=thumb_quality,
                                  n_neighbors=n_neighbors, max_points=max_points)
    data["title"] = title or f"imgclust report: {run_dir.resolve().name}"
    script = (_HERE / "report.js").read_text(encoding="utf-8")
    css = (_HERE / "report.css").read_text(encoding="utf-8")
    # Our own code must not be able to close its element early.
    assert "</script" not in script.lower() and "</style" not in css.lower()
    csp_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    env = Environment(loader=FileSystemLoader(str(_HERE)), autoescape=select_autoescape(["html"]))
    html = env.get_template("template.html").render(
        title=data["title"], css=css, script=script, csp_hash=csp_hash,
        data_json=script_json(data), thumbs_json=script_json(thumbs))
    path = Path(out) if out is not None else run_dir / "report.html"
    atomic_write_text(path, html)
    return path
