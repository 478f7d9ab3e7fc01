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
import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np

__all__ = ["build_report", "make_thumbnails", "script_json", "report_payload"]

_HERE = Path(__file__).resolve().parent
# Above this many bytes a GIF is linked rather than inlined (keeps the page light).
_MAX_INLINE_GIF = 8 << 20


def script_json(obj: Any) -> str:
    """JSON safe to place inside a ``<script>`` element: ``<``, ``>``, ``&`` become ``\\u003c`` etc.

    ``</script>`` or ``<!--`` in user strings can then never end or change the script block,
    and ``JSON.parse`` turns the escapes back into the original characters.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _thumb_one(path: str, size: int, quality: int) -> str | None:
    from PIL import Image

    from ..sources import DecodeError, load_image

    try:
        img = load_image(path)
    except DecodeError:
        return None
    # Never upscale: a 32x32 CIFAR image stays 32x32 (the page scales it), which halves the bytes.
    if max(img.size) > size:
        img.thumbnail((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def make_thumbnails(paths: Sequence[str], keys: Sequence[str] | None = None, size: int = 64, quality: int = 70,
                    workers: int | None = None) -> tuple[list[str | None], list[int]]:
    """Small base64 JPEGs, one per distinct image.

    Args:
        paths: Image files.
        keys: Identity per path (content hash); equal keys share one thumbnail.
        size: Longest side in pixels (smaller images are kept as they are).
        quality: JPEG quality.
        workers: Threads (Pillow releases the GIL while decoding and encoding).

    Returns:
        ``(thumbs, index)``: the distinct thumbnails (None when a file could not be read) and, per
        path, the position of its thumbnail in ``thumbs``.
    """
    keys = list(keys) if keys is not None else list(paths)
    first: dict[str, int] = {}
    todo: list[str] = []
    index: list[int] = []
    for p, k in zip(paths, keys):
        k = k or p
        if k not in first:
            first[k] = len(todo)
            todo.append(p)
        index.append(first[k])
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        thumbs = list(pool.map(lambda p: _thumb_one(p, size, quality), todo, chunksize=32))
    return thumbs, index


def _b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _jpeg_b64(path: Path, size: int, quality: int = 80) -> str | None:
    """An image file re-encoded as a small JPEG (explain overlays are PNGs at model resolution)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((size, size), Image.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
    except OSError:
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(values, ndigits: int = 4) -> list:
    out = []
    for v in values:
        v = None if v is None else float(v)
        out.append(None if v is None or not math.isfinite(v) else round(v, ndigits))
    return out


def _clean(obj: Any) -> Any:
    """JSON-able copy with NaN/inf as null and numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _num(v) -> float | None:
    """A finite float, else None (bools and strings are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _name_scores(metrics: dict, top: int = 3) -> dict[int, list[dict]]:
    """``metrics["cluster_name_scores"]`` (written by ``imgclust name``): cluster -> best ``top`` names."""
    raw = metrics.get("cluster_name_scores")
    out: dict[int, list[dict]] = {}
    if not isinstance(raw, dict):
        return out
    for c, items in raw.items():
        try:
            c = int(c)
        except (TypeError, ValueError):
            continue
        if not isinstance(items, list):
            continue
        ranked = []
        for it in items:
            if isinstance(it, dict) and it.get("name") is not None:
                s = _num(it.get("score"))
                ranked.append({"name": str(it["name"]), "score": None if s is None else round(s, 4)})
            elif isinstance(it, (list, tuple)) and len(it) == 2:  # (name, score) pairs
                s = _num(it[1])
                ranked.append({"name": str(it[0]), "score": None if s is None else round(s, 4)})
        if ranked:
            out[c] = ranked[:top]
    return out


def _naming_payload(metrics: dict) -> dict | None:
    """How the names were made (``metrics["naming"]``), reduced to what the caption says."""
    info = metrics.get("naming")
    if not isinstance(info, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("method", "vocab", "encoder", "score", "classes"):
        if info.get(key) is not None:
            out[key] = str(info[key])
    for key in ("vocab_size", "contrast", "temperature", "images_read", "sample", "top"):
        v = _num(info.get(key))
        if v is not None:
            out[key] = v
    if isinstance(info.get("templates"), list):
        out["n_templates"] = len(info["templates"])
    return out


def _training_payload(metrics: dict) -> dict | None:
    """Loss per epoch of a trained clustering head (SCAN, TEMI): ``metrics["training"]``."""
    tr = metrics.get("training")
    if not isinstance(tr, dict) or not isinstance(tr.get("loss_history"), list):
        return None
    loss = [_num(v) for v in tr["loss_history"]]
    if not any(v is not None for v in loss):
        return None
    out: dict[str, Any] = {"method": str(tr.get("method") or "head"),
                           "loss_history": [None if v is None else round(v, 6) for v in loss]}
    for key in ("best_head", "epochs"):
        v = _num(tr.get(key))
        if v is not None:
            out[key] = int(v)
    return out


def _probe_payload(metrics: dict) -> dict | None:
    """The supervised linear-probe reference (``imgclust probe``): accuracy ± std and its setting."""
    pr = metrics.get("probe")
    if not isinstance(pr, dict):
        return None
    acc = _num(pr.get("accuracy", pr.get("acc")))
    if acc is None:
        return None
    out: dict[str, Any] = {"accuracy": acc}
    std = _num(pr.get("accuracy_std", pr.get("acc_std")))
    if std is not None:
        out["accuracy_std"] = std
    for key in ("cv", "n", "n_classes", "nmi", "ari"):
        v = _num(pr.get(key))
        if v is not None:
            out[key] = v
    return out


def _link_to_run(target: str | None, here: Path) -> tuple[str | None, str | None, bool]:
    """``(href, shown text, is this run)`` for a compared encoder's run directory.

    The directory is looked for next to this run first (``imgclust compare`` puts every
    encoder's run in one folder, so this survives moving that folder), then at the recorded
    path. ``href`` is a relative, percent-encoded file path (``:`` becomes ``%3A``, so it can
    never be read as a ``javascript:`` or any other scheme), or None when there is no such
    directory.
    """
    if not target:
        return None, None, False
    rec = Path(str(target))
    candidates = ([here.parent / rec.name] if rec.name else []) + [rec]
    found = next((c for c in candidates if c.is_dir()), None)
    if found is None:
        return None, None, False
    try:
        rel = os.path.relpath(found.resolve() / "report.html", here.resolve())
    except ValueError:  # another drive on Windows
        return None, None, False
    rel = Path(rel).as_posix()
    same = found.resolve() == here.resolve()
    return quote(rel, safe="/"), rel, same


def _compare_payload(run_dir: Path, encoder: str | None) -> dict | None:
    """``RUN/compare.json`` (written by ``imgclust compare``) as a table the page can draw.

    Only the columns with a value in some compared row are kept; each row carries its values,
    ``*_std`` spreads, its error (rows that failed are listed apart) and a relative link to
    its run's ``report.html``.
    """
    path = run_dir / "compare.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list):
        return None
    rows_in = [r for r in raw["rows"] if isinstance(r, dict) and r.get("encoder") is not None]
    cols_in = raw.get("columns")
    if not isinstance(cols_in, list) or not cols_in:
        cols_in = [{"key": "encoder", "header": "encoder", "higher_is_better": None}]
        cols_in += [{"key": k, "header": k, "higher_is_better": None} for k in
                    dict.fromkeys(k for r in rows_in for k in r
                                  if k not in ("encoder", "error", "run_dir") and not k.endswith("_std"))]
    ok = [r for r in rows_in if not r.get("error")]
    columns = []
    for c in cols_in:
        if not isinstance(c, dict) or not c.get("key"):
            continue
        key = str(c["key"])
        if key != "encoder" and not any(r.get(key) is not None for r in ok):
            continue
        hib = c.get("higher_is_better")
        columns.append({"key": key, "header": str(c.get("header") or key),
                        "higher_is_better": hib if isinstance(hib, bool) else None})
    if not any(c["key"] == "encoder" for c in columns):
        columns.insert(0, {"key": "encoder", "header": "encoder", "higher_is_better": None})
    keys = [c["key"] for c in columns if c["key"] != "encoder"]

    def cell(v):
        if v is None or isinstance(v, bool):
            return None if v is None else str(v)
        n = _num(v)
        if n is not None:
            return int(n) if isinstance(v, (int, np.integer)) else round(n, 6)
        return str(v) if isinstance(v, str) else None

    here = run_dir
    rows, failed = [], []
    for r in rows_in:
        name = str(r["encoder"])
        href, shown, same = _link_to_run(r.get("run_dir"), here)
        this = (encoder is not None and name == str(encoder)) or same
        if r.get("error"):
            failed.append({"encoder": name, "error": str(r["error"]), "this": this})
            continue
        std = {k: _num(r.get(f"{k}_std")) for k in keys}
        rows.append({"encoder": name, "values": {k: cell(r.get(k)) for k in keys},
                     "std": {k: round(v, 6) for k, v in std.items() if v is not None},
                     "this": this, "href": href, "link_text": shown,
                     "run_dir": None if r.get("run_dir") is None else str(r["run_dir"])})
    best_in = raw.get("best") if isinstance(raw.get("best"), dict) else {}
    best = {str(k): str(v) for k, v in best_in.items() if v is not None and str(k) in keys}
    cfg = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    config = {k: cfg[k] for k in ("reduce", "n_components", "map", "method", "k", "labels", "seeds")
              if isinstance(cfg.get(k), (str, int, float)) and not isinstance(cfg.get(k), bool)}
    return {"columns": columns, "rows": rows, "failed": failed, "best": best, "config": config,
            "seconds": _num(raw.get("seconds"))}


def _confusion_view(conf: dict | None) -> dict | None:
    """The confusion table with columns reordered to best match the classes (as the PNG does)."""
    if not conf or not conf.get("matrix"):
        return None
    from scipy.optimize import linear_sum_assignment

    m = np.asarray(conf["matrix"], np.int64)
    r, c = linear_sum_assignment(-m)
    matched = list(c[np.argsort(r)])
    order = matched + [j for j in range(m.shape[1]) if j not in set(matched)]
    return {"classes": [str(x) for x in conf["classes"]], "clusters": [conf["clusters"][j] for j in order],
            "matrix": m[:, order].tolist()}


def _explain_payload(run_dir: Path, n: int) -> dict:
    """Overlays written by :mod:`imgclust.explain`, as small JPEGs keyed by image index."""
    index = run_dir / "explain" / "explain.json"
    if not index.exists():
        return {}
    try:
        meta = json.loads(index.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for item in meta.get("items", []):
        i = int(item.get("index", -1))
        f = run_dir / "explain" / str(item.get("file", ""))
        if 0 <= i < n and f.is_file():
            b64 = _jpeg_b64(f, 160)
            if b64:
                out[str(i)] = {"overlay": b64, "cluster": item.get("cluster"),
                               "similarity": item.get("similarity"), "method": meta.get("method")}
    return out


def _animation_payload(run_dir: Path) -> list[dict]:
    folder = run_dir / "animate"
    if not folder.is_dir():
        return []
    out = []
    for meta_file in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        gif = folder / str(meta.get("gif", ""))
        fig = folder / str(meta.get("figure", ""))
        item = {"method": meta.get("method"), "n_iter": meta.get("n_iter"), "gif_file": gif.name,
                "mp4_file": meta.get("mp4"), "inits": meta.get("inits")}
        if gif.is_file() and gif.stat().st_size <= _MAX_INLINE_GIF:
            item["gif"] = _b64_file(gif)
        if fig.is_file():
            item["figure"] = _b64_file(fig)
        out.append(item)
    return out


def report_payload(run_dir, *, thumb_size: int = 64, thumb_quality: int = 70, n_neighbors: int = 10
                   ) -> tuple[dict, list[str | None]]:
    """Everything the page shows, as JSON-able data: ``(data, thumbnails)``.

    Args:
        run_dir: Run directory (see :func:`imgclust.api.load_run`).
        thumb_size: Thumbnail side in pixels.
        thumb_quality: Thumbnail JPEG quality.
        n_neighbors: Precomputed nearest neighbours per image (cosine, original embeddings).
    """
    from ..api import load_run
    from ..knn import knn
    from ..summary import cluster_stats

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cols = run["table"].to_pydict()
    paths = [str(p) for p in cols["path"]]
    n = len(paths)
    labels = np.asarray(cols["cluster"], np.int64)
    x = np.asarray(cols["x"], np.float64)
    y = np.asarray(cols["y"], np.float64)
    dist = np.asarray([np.nan if v is None else v for v in cols["distance"]], np.float64)
    conf = np.asarray([np.nan if v is None else v for v in cols["confidence"]], np.float64)
    metrics = run["metrics"]
    info = run["run"]
    cfg = info.get("config", {}) or {}

    thumbs, tindex = make_thumbnails(paths, cols.get("hash"), size=thumb_size, quality=thumb_quality)

    # Map coordinates quantised to 0..10000 inside their bounding box: small and enough for a screen.
    def quant(v):
        ok = np.isfinite(v)
        lo, hi = (float(v[ok].min()), float(v[ok].max())) if ok.any() else (0.0, 1.0)
        span = hi - lo or 1.0
        return np.where(ok, np.round((v - lo) / span * 10000), 5000).astype(int).tolist(), span

    qx, sx = quant(x)
    qy, sy = quant(y)

    emb = run["embeddings"]
    nn_idx: list[int] = []
    nn_sim: list[int] = []
    k = 0
    if emb is not None and len(emb) == n and n > 1:
        idx, sims = knn(emb, min(n_neighbors, n - 1))
        k = int(idx.shape[1])
        nn_idx = idx.astype(int).ravel().tolist()
        nn_sim = np.round(np.clip(sims, -1, 1) * 1000).astype(int).ravel().tolist()

    names = metrics.get("cluster_names")
    names = {int(c): str(v) for c, v in names.items()} if isinstance(names, dict) else {}
    if not names and "cluster_name" in cols:  # names in the table only (e.g. metrics.json rewritten)
        for c, v in zip(labels.tolist(), cols["cluster_name"]):
            if v is not None and c != -1:
                names.setdefault(int(c), str(v))
    name_scores = _name_scores(metrics)
    stats = {s["cluster"]: s for s in cluster_stats(emb, labels, dist)} if emb is not None and len(emb) == n else {}
    true = cols.get("label")
    clusters = []
    for c in sorted(set(labels.tolist()), key=lambda v: (v == -1, v)):
        members = np.flatnonzero(labels == c)
        d = np.nan_to_num(dist[members], nan=np.inf)
        order = members[np.argsort(d, kind="stable")].tolist()
        item = {"id": int(c), "name": names.get(int(c)), "size": int(len(members)), "order": order,
                "cohesion": _finite([stats.get(int(c), {}).get("cohesion")])[0],
                "mean_distance": _finite([stats.get(int(c), {}).get("mean_distance")])[0]}
        if int(c) in name_scores:
            item["name_scores"] = name_scores[int(c)]
        if true is not None:
            vals, counts = np.unique([str(true[i]) for i in members if true[i] is not None], return_counts=True)
            if len(vals):
                top = int(counts.argmax())
                item["top_label"] = str(vals[top])
                item["purity"] = round(float(counts[top] / len(members)), 4)
        clusters.append(item)

    plots = {p.stem: _b64_file(p) for p in sorted((run_dir / "plots").glob("*.png"))} \
        if (run_dir / "plots").is_dir() else {}
    assigned = cols.get("assigned")
    data = {
        "n": n,
        "paths": paths,
        "cluster": labels.astype(int).tolist(),
        "x": qx, "y": qy, "aspect": round(sy / sx, 6) if sx else 1.0,
        "distance": _finite(dist), "confidence": _finite(conf, 3),
        "label": [None if v is None else str(v) for v in true] if true is not None else None,
        "caption": [None if v is None else str(v) for v in cols["caption"]] if "caption" in cols else None,
        "assigned": [bool(v) for v in assigned] if assigned is not None and any(assigned) else None,
        "thumb": tindex if len(set(tindex)) != len(tindex) else None,
        "k": k, "nn": nn_idx, "nn_sim": nn_sim,
        "clusters": clusters,
        "names": {str(c): v for c, v in names.items()},
        "metrics": _clean({key: metrics.get(key) for key in ("n_images", "n_clusters", "n_noise", "internal",
                                                             "external", "internal_space", "seeds",
                                                             "n_labelled", "n_assigned")}),
        "confusion": _confusion_view(metrics.get("confusion")),
        "k_sweep": _clean(metrics.get("k_sweep") or info.get("k_sweep")),
        "skipped": _clean(metrics.get("skipped") or []),
        "config": _clean(cfg), "timings": _clean(info.get("timings") or {}),
        "versions": _clean(info.get("versions") or {}),
        "assign_log": _clean(info.get("assign") or None),
        "plots": plots,
        "explain": _explain_payload(run_dir, n),
        "animations": _animation_payload(run_dir),
        "naming": _naming_payload(metrics),
        "training": _training_payload(metrics),
        "probe": _probe_payload(metrics),
        "compare": _compare_payload(run_dir, cfg.get("encoder")),
        "thumb_size": thumb_size,
    }
    return data, thumbs


def build_report(run_dir, out: str | os.PathLike | None = None, *, title: str | None = None,
                 thumb_size: int = 64, thumb_quality: int = 70, n_neighbors: int = 10) -> Path:
    """(Re)build the interactive ``report.html`` of a run directory.

    Args:
        run_dir: Run directory.
        out: Output file (default ``run_dir/report.html``).
        title: Page title (default: the run directory's name).
        thumb_size: Thumbnail side in pixels.
        thumb_quality: Thumbnail JPEG quality.
        n_neighbors: Nearest neighbours precomputed per image.

    Returns:
        The path of the written report.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from ..store import atomic_write_text

    run_dir = Path(run_dir)
    data, thumbs = report_payload(run_dir, thumb_size=thumb_size, thumb_quality=thumb_quality,
                                  n_neighbors=n_neighbors)
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
