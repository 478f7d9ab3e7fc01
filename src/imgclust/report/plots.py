"""Matplotlib figures drawn from data computed elsewhere. No pyplot: no global state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["cluster_map", "k_sweep", "example_grid", "confusion_matrix", "candidates_sweep", "save_all_plots",
           "palette"]


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def _save(fig, path: str | os.PathLike) -> Path:
    import io

    from .._io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def palette(n: int) -> list:
    """``n`` distinct colours (tab20, then HSV for more)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


def cluster_map(coords: np.ndarray, labels: np.ndarray, path, title: str = "Cluster map",
                names: dict[int, str] | None = None) -> Path:
    """Scatter of the 2-D map coloured by cluster; noise in grey; cluster ids at the centres."""
    fig = _figure(7.5, 6.5)
    ax = fig.add_subplot()
    ids = sorted(set(labels.tolist()) - {-1})
    cols = palette(max(1, len(ids)))
    size = float(np.clip(3000 / max(1, len(labels)), 2, 30))
    noise = labels == -1
    if noise.any():
        ax.scatter(coords[noise, 0], coords[noise, 1], s=size, c="#bbbbbb", label="noise", linewidths=0)
    for i, c in enumerate(ids):
        m = labels == c
        ax.scatter(coords[m, 0], coords[m, 1], s=size, color=cols[i], linewidths=0, alpha=0.85,
                   label=(names or {}).get(c, str(c)))
        cx, cy = np.median(coords[m], axis=0)
        ax.annotate(str(c), (cx, cy), ha="center", va="center", fontsize=9, weight="bold",
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=cols[i], alpha=0.8))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(ids) <= 20:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2, frameon=False,
                  title="cluster")
    return _save(fig, path)


def k_sweep(ks: Sequence[int], inertia: Sequence[float | None], silhouette: Sequence[float | None], best_k: int,
            path) -> Path:
    """Elbow (inertia) and silhouette per k, the chosen k marked."""
    fig = _figure(10, 4)
    a1, a2 = fig.subplots(1, 2)
    if any(v is not None for v in inertia):
        a1.plot(ks, [np.nan if v is None else v for v in inertia], "o-", color="#3465a4")
    a1.set(title="Elbow: inertia per k", xlabel="k", ylabel="inertia (sum of squared distances)")
    a2.plot(ks, [np.nan if v is None else v for v in silhouette], "o-", color="#4e9a06")
    a2.set(title="Silhouette per k", xlabel="k", ylabel="silhouette")
    for ax in (a1, a2):
        ax.axvline(best_k, color="#cc0000", ls="--", lw=1, label=f"chosen k = {best_k}")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _thumb(path: str, size: int):
    from PIL import Image

    from ..pipeline.sources import DecodeError, load_image

    try:
        img = load_image(path)
    except DecodeError:
        return np.full((size, size, 3), 200, np.uint8)
    img.thumbnail((size, size), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return np.asarray(canvas)


def example_grid(paths: Sequence[str], examples: dict[int, list[int]], path, thumb: int = 96,
                 title: str = "Examples per cluster (closest to centre first)", max_rows: int = 40,
                 names: dict[int, str] | None = None) -> Path:
    """One row per cluster, its example images left to right."""
    rows = [(c, idx) for c, idx in examples.items()][:max_rows]
    ncol = max((len(idx) for _, idx in rows), default=1)
    fig = _figure(1.1 * ncol + 1.2, 1.1 * len(rows) + 0.6)
    fig.suptitle(title)
    axes = np.atleast_2d(fig.subplots(len(rows), ncol, squeeze=False))
    for r, (c, idx) in enumerate(rows):
        for j in range(ncol):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(idx):
                ax.imshow(_thumb(paths[idx[j]], thumb))
            if j == 0:
                label = "noise" if c == -1 else (names or {}).get(c, f"cluster {c}")
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, classes: Sequence[str], clusters: Sequence[int], path,
                     title: str = "Confusion: true class x cluster") -> Path:
    """Heatmap of the contingency table, columns reordered to best match the classes."""
    from scipy.optimize import linear_sum_assignment

    m = np.asarray(matrix)
    r, c = linear_sum_assignment(-m)
    order = list(c[np.argsort(r)]) + [j for j in range(m.shape[1]) if j not in set(c)]
    m = m[:, order]
    cl = [clusters[j] for j in order]
    fig = _figure(max(5, 0.5 * len(cl) + 2.5), max(4, 0.45 * len(classes) + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(cl)), [str(x) for x in cl], fontsize=8)
    ax.set_yticks(range(len(classes)), [str(x) for x in classes], fontsize=8)
    ax.set(xlabel="cluster", ylabel="true class", title=title)
    if m.size <= 900:
        hi = m.max() or 1
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > hi / 2 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


def candidates_sweep(rows: Sequence[dict], path, title: str = "Top-n candidates clustered") -> Path:
    """Scores against the number of candidates (the SCAN seed's eval charts).

    ACC, ARI, NMI and top-5 accuracy on the left when the rows have them (labelled runs), and the
    silhouette (no labels needed) on the right.
    """
    fig = _figure(10, 4.2)
    ns = [r["n"] for r in rows]
    labelled = any(r.get("acc") is not None for r in rows)
    axes = fig.subplots(1, 2 if labelled else 1, squeeze=False)[0]
    if labelled:
        ax = axes[0]
        for key, name in (("acc", "ACC"), ("ari", "ARI"), ("nmi", "NMI"), ("top5", "top-5 neighbour accuracy")):
            vals = [np.nan if r.get(key) is None else r[key] for r in rows]
            ax.plot(ns, vals, marker="o", ms=3, label=name)
        ax.set_xlabel("candidates (n)")
        ax.set_ylabel("score")
        ax.set_ylim(min(0.0, np.nanmin([r.get("ari") if r.get("ari") is not None else 0 for r in rows])), 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("vs labels")
    ax = axes[-1]
    ax.plot(ns, [np.nan if r.get("silhouette") is None else r["silhouette"] for r in rows], marker="o", ms=3,
            color="#555555")
    ax.set_xlabel("candidates (n)")
    ax.set_ylabel("silhouette")
    ax.grid(alpha=0.3)
    ax.set_title("silhouette (no labels)")
    fig.suptitle(title)
    return _save(fig, path)


def save_all_plots(result, out_dir) -> dict[str, Path]:
    """Every figure a run has data for: map, k sweep, examples, confusion."""
    from .summary import cluster_examples

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = result.metrics.get("cluster_names")
    names = {int(k): v for k, v in names.items()} if isinstance(names, dict) else None
    files = {"cluster_map": cluster_map(result.coords, result.labels, out_dir / "cluster_map.png",
                                        title=f"{result.config.get('encoder', '')} - {result.config.get('method')} "
                                              f"(k={result.n_clusters})", names=names)}
    if result.sweep is not None:
        s = result.sweep
        files["k_sweep"] = k_sweep(s.ks, s.inertia, s.silhouette, s.best_k, out_dir / "k_sweep.png")
    files["examples"] = example_grid(result.paths, cluster_examples(result.labels, result.distances, 8),
                                     out_dir / "examples.png", names=names)
    conf = result.metrics.get("confusion")
    if conf:
        files["confusion"] = confusion_matrix(np.asarray(conf["matrix"]), conf["classes"], conf["clusters"],
                                              out_dir / "confusion.png")
    return files
