"""Drawing the animation: frames of a :class:`~._animate_steps.History`, GIF / MP4, the inits figure."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImgclustError
from ._animate_steps import History

__all__ = ["render_frames", "save_gif", "save_mp4", "init_figure"]


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


def init_figure(comp: dict, method: str, path: Path) -> Path:
    """Inertia curves of seed 0 and per-init bars of final inertia and scores, saved to ``path``."""
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
