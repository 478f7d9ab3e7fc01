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
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImgclustError

__all__ = ["History", "AnimateResult", "INITS", "init_centers", "kmeans_history", "kmedoids_history",
           "render_frames", "save_gif", "save_mp4", "compare_inits", "animate_run"]

INITS = {"kmeans": ("random", "k-means++", "maximin"), "kmedoids": ("random", "k-medoids++", "build")}


@dataclass
class History:
    """Every iteration of one k-means / k-medoids run.

    Attributes:
        labels: Cluster of every point after each iteration's assignment step.
        centers: Centres after each iteration's update step (feature space).
        medoids: Medoid indices after each iteration (k-medoids only).
        inertia: Objective after each assignment (k-means: sum of squared distances; k-medoids:
            sum of distances).
        init: Indices of the initial centres (all initialisations pick data points).
        converged: Whether the assignment stopped changing before ``max_iter``.
    """

    method: str
    init_name: str
    labels: list[np.ndarray] = field(default_factory=list)
    centers: list[np.ndarray] = field(default_factory=list)
    medoids: list[np.ndarray] = field(default_factory=list)
    inertia: list[float] = field(default_factory=list)
    init: np.ndarray | None = None
    converged: bool = False

    @property
    def n_iter(self) -> int:
        """Number of recorded iterations."""
        return len(self.labels)

    @property
    def final_labels(self) -> np.ndarray:
        """Labels after the last iteration."""
        return self.labels[-1]


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


# --------------------------------------------------------------------------- algorithms


def _sqdist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared euclidean distances (N, K) without the (N, K, D) temporary."""
    d = (X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)[None]
    return np.maximum(d, 0)


def init_centers(X: np.ndarray, k: int, method: str, rng: np.random.Generator,
                 D: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``k`` initial centres chosen from the rows of ``X``.

    Args:
        X: (N, d) features.
        k: Number of centres.
        method: ``random``, ``k-means++`` / ``k-medoids++``, ``maximin`` or ``build``.
        rng: Random generator.
        D: Optional (N, N) distance matrix (k-medoids uses plain distances, k-means squared).
    """
    n = len(X)
    if method == "random":
        return rng.choice(n, k, replace=False)
    if method in ("k-means++", "k-medoids++", "maximin"):
        chosen = [int(rng.integers(n))]
        dmin = _sqdist(X, X[chosen]).ravel() if D is None else D[:, chosen[0]] ** 2
        for _ in range(1, k):
            if method == "maximin":
                nxt = int(dmin.argmax())
            else:
                p = dmin / dmin.sum() if dmin.sum() > 0 else np.full(n, 1 / n)
                nxt = int(rng.choice(n, p=p))
            chosen.append(nxt)
            dn = _sqdist(X, X[[nxt]]).ravel() if D is None else D[:, nxt] ** 2
            dmin = np.minimum(dmin, dn)
        return np.asarray(chosen)
    if method == "build":
        if D is None:
            D = np.sqrt(_sqdist(X, X))
        chosen = [int(D.sum(1).argmin())]
        cur = D[:, chosen[0]].copy()
        for _ in range(1, k):
            gain = np.maximum(cur[:, None] - D, 0).sum(0)  # cost reduction if each point became a medoid
            gain[chosen] = -1
            nxt = int(gain.argmax())
            chosen.append(nxt)
            cur = np.minimum(cur, D[:, nxt])
        return np.asarray(chosen)
    raise ImgclustError(f"unknown initialisation {method!r}; valid: random, k-means++, maximin, k-medoids++, build")


def kmeans_history(X: np.ndarray, k: int, init: str = "k-means++", max_iter: int = 30, random_state: int = 0
                   ) -> History:
    """Lloyd's k-means, recording every iteration; stops when no point changes cluster."""
    X = np.asarray(X, np.float64)
    rng = np.random.default_rng(random_state)
    h = History("kmeans", init)
    h.init = init_centers(X, k, init, rng)
    C = X[h.init].copy()
    prev = None
    for _ in range(max_iter):
        d = _sqdist(X, C)
        lab = d.argmin(1)
        h.inertia.append(float(d[np.arange(len(X)), lab].sum()))
        newC = C.copy()
        for c in range(k):
            m = lab == c
            if m.any():
                newC[c] = X[m].mean(0)
            else:  # an empty cluster restarts at the point worst served (standard fix)
                far = int(d[np.arange(len(X)), lab].argmax())
                newC[c] = X[far]
        h.labels.append(lab)
        h.centers.append(newC)
        C = newC
        if prev is not None and np.array_equal(prev, lab):
            h.converged = True
            break
        prev = lab
    return h


def kmedoids_history(X: np.ndarray, k: int, init: str = "k-medoids++", max_iter: int = 30, random_state: int = 0,
                     D: np.ndarray | None = None) -> History:
    """Alternating ("Voronoi iteration") k-medoids, recording every iteration.

    Each iteration assigns every point to its nearest medoid, then moves each medoid to the member
    with the smallest total distance to the others; stops when the medoids no longer move.
    """
    X = np.asarray(X, np.float64)
    rng = np.random.default_rng(random_state)
    if D is None:
        D = np.sqrt(_sqdist(X, X))
    h = History("kmedoids", init)
    h.init = init_centers(X, k, init, rng, D=D)
    med = np.asarray(h.init).copy()
    for _ in range(max_iter):
        dm = D[:, med]
        lab = dm.argmin(1)
        h.inertia.append(float(dm[np.arange(len(X)), lab].sum()))
        new = med.copy()
        for c in range(k):
            members = np.flatnonzero(lab == c)
            if len(members):
                new[c] = members[D[np.ix_(members, members)].sum(1).argmin()]
        h.labels.append(lab)
        h.medoids.append(new)
        h.centers.append(X[new])
        if np.array_equal(new, med):
            h.converged = True
            break
        med = new
    return h


# --------------------------------------------------------------------------- drawing


def _center_xy(h: History, coords: np.ndarray, t: int, prev: np.ndarray) -> np.ndarray:
    """Map position of each centre after iteration ``t``."""
    if h.method == "kmedoids":
        return coords[h.medoids[t]]
    out = prev.copy()
    lab = h.labels[t]
    for c in range(len(prev)):
        m = lab == c
        if m.any():
            out[c] = coords[m].mean(0)
    return out


def render_frames(coords: np.ndarray, h: History, title: str = "", size: tuple[float, float] = (6.4, 5.6),
                  dpi: int = 90) -> list[np.ndarray]:
    """One RGB frame (H, W, 3) per iteration: points recoloured, centres moving with trails."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..report.plots import palette

    k = len(h.centers[0])
    cols = np.asarray(palette(k))[:, :3]
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xticks([])
    ax.set_yticks([])
    pad = 0.04 * (coords.max(0) - coords.min(0) + 1e-9)
    ax.set_xlim(coords[:, 0].min() - pad[0], coords[:, 0].max() + pad[0])
    ax.set_ylim(coords[:, 1].min() - pad[1], coords[:, 1].max() + pad[1])
    s = float(np.clip(2500 / max(1, len(coords)), 3, 40))
    pts = ax.scatter(coords[:, 0], coords[:, 1], s=s, c=[(0.7, 0.7, 0.7)], linewidths=0, alpha=0.85)
    trails = [ax.plot([], [], "-", color=cols[c], lw=1.4, alpha=0.9)[0] for c in range(k)]
    pos = coords[h.init].astype(np.float64)
    start = ax.scatter(pos[:, 0], pos[:, 1], s=60, marker="o", facecolors="none", edgecolors=cols, linewidths=1.2)
    cen = ax.scatter(pos[:, 0], pos[:, 1], s=170, marker="X", c=cols, edgecolors="black", linewidths=1.2, zorder=5)
    start.set_zorder(4)
    path = [pos.copy()]
    frames = []
    prev_lab = None
    for t in range(h.n_iter):
        lab = h.labels[t]
        pos = _center_xy(h, coords, t, pos)
        path.append(pos.copy())
        pts.set_facecolors(cols[lab])
        cen.set_offsets(pos)
        trail = np.stack(path)  # (t+2, k, 2)
        for c in range(k):
            trails[c].set_data(trail[:, c, 0], trail[:, c, 1])
        moved = "" if prev_lab is None else f", {int((lab != prev_lab).sum())} points changed"
        done = " (converged)" if h.converged and t == h.n_iter - 1 else ""
        ax.set_title(f"{title}iteration {t + 1}/{h.n_iter}{done}\ninertia {h.inertia[t]:.4g}{moved}", fontsize=10)
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
        prev_lab = lab
    return frames


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 3.0, hold: float = 2.0) -> Path:
    """Write frames as a looping GIF (the last frame held ``hold`` seconds)."""
    from PIL import Image

    from .._io import atomic_write_bytes

    if not frames:
        raise ImgclustError("no frames to write")
    imgs = [Image.fromarray(f).quantize(colors=255, method=Image.Quantize.MEDIANCUT) for f in frames]
    ms = int(round(1000 / fps))
    durations = [ms] * (len(imgs) - 1) + [max(ms, int(hold * 1000))]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=durations, loop=0,
                 disposal=1, optimize=False)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def save_mp4(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 3.0, hold: float = 2.0,
             ffmpeg: str | None = None) -> Path | None:
    """Write an H.264 (or MPEG-4) video with ffmpeg; None when ffmpeg is not installed or fails."""
    ffmpeg = ffmpeg or shutil.which("ffmpeg")
    if not ffmpeg or not frames:
        return None
    h, w = frames[0].shape[:2]
    seq = list(frames) + [frames[-1]] * max(0, int(round(hold * fps)) - 1)
    raw = b"".join(np.ascontiguousarray(f[:h, :w]).tobytes() for f in seq)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    for codec in ("libx264", "mpeg4"):
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", str(fps), "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p",
               "-c:v", codec, str(tmp)]
        try:
            proc = subprocess.run(cmd, input=raw, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode == 0 and tmp.exists():
            os.replace(tmp, path)
            return path
    tmp.unlink(missing_ok=True)
    return None


# --------------------------------------------------------------------------- comparing inits


def compare_inits(X: np.ndarray, k: int, method: str = "kmeans", inits: Sequence[str] | None = None,
                  seeds: int = 5, max_iter: int = 100, labels_true: Sequence | None = None,
                  random_state: int = 0, D: np.ndarray | None = None) -> dict:
    """Run each initialisation with several seeds to convergence; final inertia, scores, iterations.

    Returns:
        ``{init: {"inertia": [...], "silhouette": [...], "n_iter": [...], "nmi"/"acc": [...],
        "curve": inertia per iteration of the first seed}}``.
    """
    from sklearn.metrics import silhouette_score

    from ..metrics import external_scores

    inits = list(inits or INITS[method])
    run = kmeans_history if method == "kmeans" else kmedoids_history
    out: dict[str, dict] = {}
    for name in inits:
        rec: dict[str, list] = {"inertia": [], "silhouette": [], "n_iter": []}
        for s in range(seeds):
            kw = {"D": D} if method == "kmedoids" else {}
            h = run(X, k, init=name, max_iter=max_iter, random_state=random_state + s, **kw)
            lab = h.final_labels
            rec["inertia"].append(h.inertia[-1])
            rec["n_iter"].append(h.n_iter)
            ok = len(set(lab.tolist())) > 1
            rec["silhouette"].append(float(silhouette_score(X, lab, sample_size=min(len(X), 2000),
                                                            random_state=0)) if ok else None)
            if labels_true is not None:
                known = np.asarray([v is not None for v in labels_true])
                ext = external_scores(np.asarray([str(v) for v in labels_true], object)[known].astype(str),
                                      lab[known])
                rec.setdefault("nmi", []).append(ext.get("nmi"))
                rec.setdefault("acc", []).append(ext.get("acc"))
            if s == 0:
                rec["curve"] = h.inertia
        out[name] = rec
    return out


def _init_figure(comp: dict, method: str, path: Path) -> Path:
    from ..report.plots import _figure, _save

    names = list(comp)
    score_keys = ["silhouette"] + [key for key in ("nmi", "acc") if key in comp[names[0]]]
    fig = _figure(4.0 * (2 + len(score_keys)), 3.8)
    axes = fig.subplots(1, 2 + len(score_keys))
    colors = ["#3465a4", "#f57900", "#4e9a06", "#75507b"]
    for j, name in enumerate(names):
        curve = comp[name]["curve"]
        axes[0].plot(range(1, len(curve) + 1), curve, "o-", ms=3, color=colors[j % 4], label=name)
    axes[0].set(title="Inertia per iteration (seed 0)", xlabel="iteration", ylabel="inertia")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(frameon=False, fontsize=8)

    def bars(ax, key, title):
        vals = [[v for v in comp[n][key] if v is not None] for n in names]
        means = [np.mean(v) if v else np.nan for v in vals]
        stds = [np.std(v) if v else 0 for v in vals]
        ax.bar(range(len(names)), means, yerr=stds, color=colors[:len(names)], capsize=4)
        for i, v in enumerate(vals):
            ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=10, color="black", zorder=3)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(title)
        finite = [m for m in means if np.isfinite(m)]
        if finite and key == "inertia":
            lo, hi = min(min(v) for v in vals if v), max(max(v) for v in vals if v)
            ax.set_ylim(lo - 0.15 * (hi - lo + 1e-9) - 1e-9, hi + 0.15 * (hi - lo + 1e-9))

    bars(axes[1], "inertia", "Final inertia (lower is better)")
    for ax, key in zip(axes[2:], score_keys):
        bars(ax, key, {"silhouette": "Silhouette (higher is better)", "nmi": "NMI vs labels",
                       "acc": "ACC vs labels"}[key])
    seeds = len(comp[names[0]]["inertia"])
    fig.suptitle(f"{method}: initialisations compared ({seeds} seeds each, mean ± std, dots = seeds)")
    return _save(fig, path)


# --------------------------------------------------------------------------- run directory


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
    from ..rundir import load_run, run_embeddings
    from .assign import cluster_space

    if method not in INITS:
        raise ImgclustError(f"--method must be kmeans or kmedoids (got {method!r})")
    init = init or INITS[method][1]
    if init not in INITS[method]:
        raise ImgclustError(f"--init for {method} must be one of {', '.join(INITS[method])} (got {init!r})")
    run_dir = Path(run_dir)
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
    fig = _init_figure(comp, name, out / f"{method}_inits.png")
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
