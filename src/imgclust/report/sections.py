"""The report's optional sections, each read from what a command left in the run directory.

Every function takes the run's metrics or directory and returns JSON-able data for the page,
or ``None``/empty when that command has not run: cluster names (``imgclust name``), the
encoder comparison (``compare.json``), a head's training curve, the linear probe, Grad-CAM
overlays (``explain/``) and animations (``animate/``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .thumbs import b64_file, jpeg_b64

__all__ = ["finite", "name_scores", "naming_payload", "training_payload", "probe_payload", "compare_payload",
           "confusion_view", "explain_payload", "animation_payload"]

# Above this many bytes a GIF is linked rather than inlined (keeps the page light).
_MAX_INLINE_GIF = 8 << 20


def finite(values, ndigits: int = 4) -> list:
    """Values rounded to ``ndigits``, with NaN/inf/None as ``None`` (JSON null)."""
    out = []
    for v in values:
        v = None if v is None else float(v)
        out.append(None if v is None or not math.isfinite(v) else round(v, ndigits))
    return out


def _num(v) -> float | None:
    """A finite float, else None (bools and strings are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def name_scores(metrics: dict, top: int = 3) -> dict[int, list[dict]]:
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


def naming_payload(metrics: dict) -> dict | None:
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


def training_payload(metrics: dict) -> dict | None:
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


def probe_payload(metrics: dict) -> dict | None:
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


def compare_payload(run_dir: Path, encoder: str | None) -> dict | None:
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


def confusion_view(conf: dict | None) -> dict | None:
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


def explain_payload(run_dir: Path, n: int) -> dict:
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
            b64 = jpeg_b64(f, 160)
            if b64:
                out[str(i)] = {"overlay": b64, "cluster": item.get("cluster"),
                               "similarity": item.get("similarity"), "method": meta.get("method")}
    return out


def animation_payload(run_dir: Path) -> list[dict]:
    """GIFs and initialisation figures written by :mod:`imgclust.explore.animate` (``animate/``)."""
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
            item["gif"] = b64_file(gif)
        if fig.is_file():
            item["figure"] = b64_file(fig)
        out.append(item)
    return out
