"""Figures and report sections of the experiments: robustness to corruptions and augmented views.

``robustness.json`` (written by ``imgclust robustness``) becomes line plots of each score
against severity, one line per corruption, and a table in the report; ``metrics["augment"]``
(``imgclust run --augment N``) becomes a short summary and the augmentation grid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .plots import _figure, _save, palette

__all__ = ["robustness_figure", "augmentation_grid", "robustness_payload", "augment_payload"]

_LABELS = {"acc": "ACC", "nmi": "NMI", "ari": "ARI", "silhouette": "silhouette",
           "nmi_vs_clean": "NMI vs clean clustering", "ari_vs_clean": "ARI vs clean clustering",
           "cosine_to_clean": "cosine to clean vector"}


def _present(rows: Sequence[dict], key: str) -> bool:
    return any(isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) for r in rows)


def robustness_figure(rows: Sequence[dict], path, title: str = "Robustness: score vs severity") -> Path:
    """One panel per score, a line per corruption (ACC/NMI/ARI with labels, else agreement with the clean run)."""
    scores = [s for s in ("acc", "nmi", "ari") if _present(rows, s)] or ["nmi_vs_clean", "ari_vs_clean"]
    scores += ["silhouette", "cosine_to_clean"]
    names = list(dict.fromkeys(r["corruption"] for r in rows))
    colours = palette(len(names))
    fig = _figure(3.2 * len(scores), 3.2)
    fig.suptitle(title)
    axes = fig.subplots(1, len(scores), squeeze=False)[0]
    for ax, key in zip(axes, scores):
        for name, col in zip(names, colours):
            pts = sorted((r["severity"], r[key]) for r in rows if r["corruption"] == name
                         and isinstance(r.get(key), (int, float)) and math.isfinite(r[key]))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=col, label=name)
        if key != "silhouette":
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_title(_LABELS.get(key, key), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def augmentation_grid(originals: Sequence, views: Sequence[Sequence], path, thumb: int = 96,
                      title: str = "Augmented views (original first)") -> Path:
    """One row per image: the original then its augmented views (PIL images)."""
    ncol = 1 + max((len(v) for v in views), default=0)
    fig = _figure(1.1 * ncol + 0.4, 1.1 * len(originals) + 0.6)
    fig.suptitle(title)
    axes = fig.subplots(len(originals), ncol, squeeze=False)
    for r, (orig, vs) in enumerate(zip(originals, views)):
        for j, img in enumerate([orig, *vs]):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(np.asarray(img.resize((thumb, thumb))))
            if r == 0:
                ax.set_title("original" if j == 0 else f"view {j}", fontsize=8)
    return _save(fig, path)


def _round(v, nd: int = 4):
    return round(float(v), nd) if isinstance(v, (int, float)) and math.isfinite(v) else None


def robustness_payload(run_dir: Path) -> dict | None:
    """``robustness.json`` reduced to what the report's table shows, or ``None`` when absent."""
    path = Path(run_dir) / "robustness.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    rows = data.get("rows") or []
    keys = [k for k in ("acc", "nmi", "ari", "silhouette", "nmi_vs_clean", "cosine_to_clean") if _present(rows, k)]
    return {"config": {k: data.get("config", {}).get(k) for k in ("encoder", "method", "k", "n_images", "seeds",
                                                                 "random_state", "distractors", "descriptions")},
            "keys": keys, "labels": {k: _LABELS[k] for k in keys},
            "rows": [{"corruption": str(r.get("corruption")), "severity": int(r.get("severity", 0)),
                      "param": _round(r.get("param")), **{k: _round(r.get(k)) for k in keys}} for r in rows]}


def augment_payload(metrics: dict) -> dict | None:
    """``metrics["augment"]`` (views per image, how they were used, scores on the originals)."""
    info = metrics.get("augment")
    return json.loads(json.dumps(info, default=str)) if isinstance(info, dict) else None
