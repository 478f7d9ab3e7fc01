"""Animate k-means / k-medoids iterations on a run's 2-D map, and compare initialisations.

The clustering runs in the run's clustering feature space (the PCA refit that
:func:`imgclust.explore.cluster_space` verifies, else the L2-normalised embeddings); the frames
show it on the saved 2-D map: points take the colour of their current cluster and each centre is
drawn where its members are (k-means: the mean map position of its members; k-medoids: the
medoid itself), with a trail from where it started. One frame per iteration, so a GIF of a run
that converged in 7 iterations has exactly 7 frames.

Initialisations compared (several seeds each, final inertia and scores):

* k-means: ``random`` (k distinct points), ``k-means++`` (D² sampling, Arthur & Vassilvitskii
  2007) and ``maximin`` (furthest-first traversal, Gonzalez 1985).
* k-medoids: ``random``, ``k-medoids++`` (D² sampling) and ``build`` (PAM's greedy BUILD,
  Kaufman & Rousseeuw 1990).

The algorithms are in :mod:`._animate_steps`, the drawing and video files in
:mod:`._animate_render`; :func:`animate_run` reads a run, runs both and writes the files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImgclustError
from ._animate_render import init_figure, render_frames, save_gif, save_mp4
from ._animate_steps import INITS, History, _sqdist, compare_inits, init_centers, kmeans_history, kmedoids_history

__all__ = ["History", "AnimateResult", "INITS", "init_centers", "kmeans_history", "kmedoids_history",
           "render_frames", "save_gif", "save_mp4", "compare_inits", "animate_run"]


@dataclass
class AnimateResult:
    """Files written by :func:`animate_run` and the numbers behind them."""

    gif: Path
    mp4: Path | None
    figure: Path
    meta: Path
    n_iter: int
    history: History
    comparison: dict


def animate_run(run_dir: str | os.PathLike, method: str = "kmeans", *, k: int | None = None,
                init: str | None = None, max_iter: int = 30, max_points: int = 2000, fps: float = 3.0,
                seeds: int = 5, random_state: int = 0, mp4: bool = True, out_dir: str | os.PathLike | None = None,
                report: bool = True) -> AnimateResult:
    """Animate a run's clustering iterations and compare initialisations.

    Args:
        run_dir: Run directory (embeddings.npy + the 2-D map in clusters.parquet).
        method: ``kmeans`` or ``kmedoids``.
        k: Number of clusters (default: the run's).
        init: Initialisation of the animated run (default ``k-means++`` / ``k-medoids++``).
        max_iter: Most iterations animated.
        max_points: Subsample to this many images (seeded) so frames stay readable and fast.
        fps: GIF / MP4 frames per second.
        seeds: Runs per initialisation in the comparison.
        random_state: Seed.
        mp4: Also write an MP4 when ffmpeg is installed.
        out_dir: Output folder (default ``run_dir/animate``).
        report: Rebuild report.html so it shows the animation.

    Returns:
        An :class:`AnimateResult`; the GIF has exactly ``n_iter`` frames.
    """
    from .._io import atomic_write_text

    if method not in INITS:
        raise ImgclustError(f"--method must be kmeans or kmedoids (got {method!r})")
    init = init or INITS[method][1]
    if init not in INITS[method]:
        raise ImgclustError(f"--init for {method} must be one of {', '.join(INITS[method])} (got {init!r})")
    run_dir = Path(run_dir)
    X, coords, labels_true, space, k = _load_points(run_dir, k, max_points, random_state)
    if max_iter < 1:
        raise ImgclustError("--max-iter must be at least 1")

    D = np.sqrt(_sqdist(X, X)) if method == "kmedoids" else None
    if method == "kmeans":
        h = kmeans_history(X, k, init=init, max_iter=max_iter, random_state=random_state)
    else:
        h = kmedoids_history(X, k, init=init, max_iter=max_iter, random_state=random_state, D=D)
    name = {"kmeans": "k-means", "kmedoids": "k-medoids"}[method]
    frames = render_frames(coords, h, title=f"{name} ({init}, k={k}): ")
    out = Path(out_dir) if out_dir is not None else run_dir / "animate"
    out.mkdir(parents=True, exist_ok=True)
    gif = save_gif(frames, out / f"{method}.gif", fps=fps)
    mp4_path = save_mp4(frames, out / f"{method}.mp4", fps=fps) if mp4 else None
    comp = compare_inits(X, k, method, seeds=seeds, labels_true=labels_true, random_state=random_state, D=D)
    fig = init_figure(comp, name, out / f"{method}_inits.png")
    meta = {"method": method, "init": init, "k": k, "n_iter": h.n_iter, "converged": h.converged,
            "n_points": int(len(X)), "space": space, "gif": gif.name, "mp4": mp4_path.name if mp4_path else None,
            "figure": fig.name, "inertia": h.inertia,
            "inits": {n: {key: v for key, v in r.items() if key != "curve"} for n, r in comp.items()}}
    meta_path = out / f"{method}.json"
    atomic_write_text(meta_path, json.dumps(meta, indent=2, default=float))
    if report and out_dir is None:
        from ..report import build_report

        build_report(run_dir)
    return AnimateResult(gif=gif, mp4=mp4_path, figure=fig, meta=meta_path, n_iter=h.n_iter, history=h,
                         comparison=comp)


def _load_points(run_dir: Path, k: int | None, max_points: int, random_state: int):
    """``(X, coords, labels_true, space, k)``: clustering features and map positions, subsampled (seeded)."""
    from ..rundir import load_run, run_embeddings
    from .assign import cluster_space

    run = load_run(run_dir)
    emb = run_embeddings(run)
    cols = run["table"].to_pydict()
    n_fit = int((run["run"].get("assign") or {}).get("n_fit") or len(emb))
    transform, _, space = cluster_space(run, n_fit)
    X = transform(emb).astype(np.float64)
    coords = np.stack([cols["x"], cols["y"]], 1).astype(np.float64)
    labels_true = cols.get("label")
    rng = np.random.default_rng(random_state)
    keep = np.sort(rng.choice(len(X), max_points, replace=False)) if len(X) > max_points else np.arange(len(X))
    X, coords = X[keep], coords[keep]
    if labels_true is not None:
        labels_true = [labels_true[i] for i in keep]
        if sum(v is not None for v in labels_true) < 2:
            labels_true = None
    cfg = run["run"].get("config", {}) or {}
    k = int(k or cfg.get("k") or run["metrics"].get("n_clusters") or 0)
    if k < 2 or k > len(X):
        raise ImgclustError(f"k must be between 2 and the number of images ({len(X)}), got {k}; pass --k")
    return X, coords, labels_true, space, k
