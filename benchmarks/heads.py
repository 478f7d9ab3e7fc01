"""Benchmark the deep clustering heads (SCAN, TEMI) against the k-means baseline.

Embeds a labelled image folder (default: the CIFAR-10 test set in ``../shared``) with
EfficientNet-Lite0 once (cached to ``benchmarks/results/cifar10_effnet_lite0.npz``), then runs
k-means (the papers' protocol: several inits, fit on all images), SCAN and TEMI with several
seeds, and records ACC/NMI/ARI (mean +- std), wall time and peak memory. A cross-validated
linear probe gives the supervised upper reference.

Usage::

    .venv/bin/python benchmarks/heads.py                       # all 10,000 images, 3 seeds
    .venv/bin/python benchmarks/heads.py --per-class 200       # quicker
    .venv/bin/python benchmarks/heads.py --encode-only         # just build the cache

This is a script, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-test"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cifar10_effnet_lite0.npz"
EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _list_folder(folder: Path, per_class: int | None) -> tuple[list[Path], np.ndarray, list[str]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths, labels = [], []
    for ci, c in enumerate(classes):
        files = sorted(p for p in (folder / c).iterdir() if p.suffix.lower() in EXTS)
        if per_class:
            files = files[:per_class]
        paths += files
        labels += [ci] * len(files)
    return paths, np.asarray(labels, np.int64), classes


def _subset(X: np.ndarray, y: np.ndarray, rank: np.ndarray, per_class: int | None):
    """The first ``per_class`` images of every class (same order as the folder listing)."""
    if not per_class:
        return X, y
    keep = rank < per_class
    return X[keep], y[keep]


def _encode_direct(paths: list[Path], batch_size: int = 64) -> np.ndarray:
    """Encode with imgclust's EfficientNet-Lite0 encoder directly (fallback path)."""
    from PIL import Image

    from imgclust.encoders import create_encoder

    enc = create_encoder("efficientnet-lite0", device="cpu")
    out = []
    t0 = time.time()
    for i in range(0, len(paths), batch_size):
        imgs = [Image.open(p).convert("RGB") for p in paths[i:i + batch_size]]
        out.append(enc.encode_images(imgs))
        done = min(i + batch_size, len(paths))
        if (i // batch_size) % 10 == 0 or done == len(paths):
            rate = done / max(time.time() - t0, 1e-9)
            print(f"  encoded {done}/{len(paths)} ({rate:.1f} img/s)", file=sys.stderr, flush=True)
    return np.concatenate(out).astype(np.float32)


def load_embeddings(folder: str | Path, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """EfficientNet-Lite0 embeddings and integer labels of a class-per-subfolder image folder.

    Tries the project's embedding pipeline (``imgclust.api.embed_folder``) first and falls back
    to encoding with ``imgclust.encoders.create_encoder`` and PIL. The whole folder is cached to
    ``benchmarks/results/cifar10_effnet_lite0.npz`` (keyed by folder path), so reruns and smaller
    ``per_class`` subsets are instant.

    Args:
        folder: Image folder with one subfolder per class.
        per_class: Keep the first ``per_class`` images of each class (``None``/0 = all).

    Returns:
        ``(X, y)``: (N, 1280) float32 L2-normalised embeddings and (N,) int64 labels.
    """
    folder = Path(folder).resolve()
    if CACHE.exists():
        z = np.load(CACHE, allow_pickle=False)
        if str(z["folder"]) == str(folder):
            X, y, rank = z["X"], z["y"], z["rank"]
            return _subset(X, y, rank, per_class)
    paths, y, _ = _list_folder(folder, None)
    X = None
    try:  # the project's pipeline, when it exists (being written concurrently)
        from imgclust.api import embed_folder  # type: ignore

        res = embed_folder(folder, encoder="efficientnet-lite0", device="cpu")
        Xp = np.asarray(getattr(res, "embeddings", res[0] if isinstance(res, tuple) else res), np.float32)
        rpaths = getattr(res, "paths", res[1] if isinstance(res, tuple) and len(res) > 1 else None)
        if rpaths is not None and len(rpaths) == len(Xp):
            pos = {str(Path(p).resolve()): i for i, p in enumerate(rpaths)}
            X = Xp[[pos[str(p.resolve())] for p in paths]]
        elif len(Xp) == len(paths):
            X = Xp
    except Exception as exc:  # noqa: BLE001 - any failure: use the direct encoder
        print(f"imgclust.api.embed_folder unavailable ({type(exc).__name__}: {exc}); encoding directly",
              file=sys.stderr)
    if X is None:
        X = _encode_direct(paths)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    rank = np.concatenate([np.arange((y == c).sum()) for c in np.unique(y)])
    RESULTS.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, X=X.astype(np.float32), y=y, rank=rank, folder=str(folder))
    return _subset(X, y, rank, per_class)


# ------------------------------------------------------------------------------- measurement


def _rss_mb() -> float:
    """Current resident set size (MB) from /proc; falls back to the high-water mark."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _peak_rss_mb()


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux: the process high-water mark.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(job: dict, queue) -> None:
    """Run one fit in a fresh process: wall time and peak-RSS growth over the loaded data."""
    try:
        import torch

        if job["threads"]:
            torch.set_num_threads(job["threads"])
        X, y = load_embeddings(job["data"], job["per_class"])
        from imgclust.cluster import make_clusterer
        from imgclust.explore.probe import kmeans_baseline
        from imgclust.metrics import external_scores

        gc.collect()
        base = _rss_mb()
        t0 = time.perf_counter()
        if job["method"] == "kmeans":
            res = kmeans_baseline(X, y, job["k"], n_init=job["params"].get("n_init", 10), seeds=(job["seed"],))
            scores = {m: res[m] for m in ("acc", "nmi", "ari")}
        else:
            model = make_clusterer(job["method"], n_clusters=job["k"], random_state=job["seed"], **job["params"])
            model.fit(X)
            scores = external_scores(y, model.labels_)
        wall = time.perf_counter() - t0
        peak = _peak_rss_mb()
        scores.update(wall_s=wall, peak_rss_delta_mb=max(0.0, peak - base), peak_rss_mb=peak)
        queue.put(("ok", scores))
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        import traceback

        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_method(name: str, k: int, seeds: list[int], params: dict, data: Path, per_class: int | None,
               threads: int) -> dict:
    """Fit one method per seed, each in its own spawned process (clean memory high-water mark)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    runs = []
    for s in seeds:
        q = ctx.Queue()
        job = dict(method=name, k=k, seed=s, params=params, data=str(data), per_class=per_class, threads=threads)
        p = ctx.Process(target=_worker, args=(job, q))
        p.start()
        status, sc = q.get()
        p.join()
        if status != "ok":
            raise RuntimeError(f"{name} seed {s} failed: {sc}")
        print(f"  {name} seed={s}: acc={sc['acc']:.4f} nmi={sc['nmi']:.4f} ari={sc['ari']:.4f} "
              f"time={sc['wall_s']:.1f}s +mem={sc['peak_rss_delta_mb']:.0f}MB", file=sys.stderr, flush=True)
        runs.append(sc)
    return {"method": name, "params": params, "runs": runs, **_agg(runs)}


def _agg(runs: list[dict]) -> dict:
    out = {}
    for k in runs[0]:
        v = np.asarray([r[k] for r in runs], float)
        out[k] = float(v.mean())
        out[f"{k}_std"] = float(v.std())
    return out


def markdown_table(results: dict) -> str:
    meta = results["meta"]
    base = next((r["acc"] for r in results["methods"] if r["method"] == "kmeans"), None)
    lines = [
        f"# Clustering heads on {meta['dataset']} ({meta['n']} images, k={meta['k']}, "
        f"EfficientNet-Lite0 embeddings, {meta['n_seeds']} seeds)",
        "",
        "| method | ACC | NMI | ARI | ACC vs k-means | wall time / seed (s) | peak RSS growth (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["methods"]:
        delta = "" if base is None or r["method"] == "kmeans" else f"{100 * (r['acc'] - base):+.1f} pts"
        lines.append(
            f"| {r['method']} | {r['acc']:.3f} ± {r['acc_std']:.3f} | {r['nmi']:.3f} ± {r['nmi_std']:.3f} | "
            f"{r['ari']:.3f} ± {r['ari_std']:.3f} | {delta} | {r['wall_s']:.1f} ± {r['wall_s_std']:.1f} | "
            f"{r['peak_rss_delta_mb']:.0f} |")
    p = results.get("linear_probe")
    if p:
        lines += ["", f"Supervised upper reference (linear probe, {p['cv']}-fold CV logistic regression on the "
                  f"L2-normalised embeddings): accuracy {p['acc']:.3f} ± {p['acc_std']:.3f}, "
                  f"NMI {p['nmi']:.3f}, ARI {p['ari']:.3f}."]
    lines += ["", "k-means: the papers' protocol (10 k-means++ restarts per seed, fit on all images). "
              "SCAN and TEMI: estimator defaults (`imgclust.cluster.SCAN()` / `TEMI()`), no per-dataset tuning.",
              "", f"Machine: {meta['cpus']} CPU cores, torch threads {meta['torch_threads'] or 'default'}. "
              "Each fit runs in a fresh process; peak RSS growth = its RSS high-water mark minus its RSS "
              "after loading the embeddings."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="labelled image folder (class subfolders)")
    ap.add_argument("--per-class", type=int, default=0, help="images per class (0 = all)")
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (0..seeds-1)")
    ap.add_argument("--out", default=str(RESULTS / "heads.json"))
    ap.add_argument("--methods", default="kmeans,scan,temi")
    ap.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    ap.add_argument("--encode-only", action="store_true", help="build the embedding cache and exit")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not data.is_absolute() and not data.exists():
        data = ROOT / data
    if not data.is_dir():
        print(f"dataset folder not found: {data}", file=sys.stderr)
        return 2
    t0 = time.time()
    X, y = load_embeddings(data, args.per_class or None)
    print(f"embeddings: {X.shape} in {time.time() - t0:.1f}s", file=sys.stderr)
    if args.encode_only:
        return 0

    from imgclust.explore.probe import linear_probe

    k = int(len(np.unique(y)))
    seeds = list(range(args.seeds))
    methods = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        print(f"{name}:", file=sys.stderr)
        # k-means: the papers' protocol (probe.kmeans_baseline): 10 restarts, fit on all images.
        params = {"n_init": 10} if name == "kmeans" else {}
        methods.append(run_method(name, k, seeds, params, data, args.per_class or None, args.threads))
    results = {
        "meta": {"dataset": data.name, "n": int(len(X)), "k": k, "n_seeds": len(seeds),
                 "encoder": "efficientnet-lite0", "cpus": os.cpu_count(),
                 "torch_threads": args.threads, "torch": torch.__version__,
                 "date": time.strftime("%Y-%m-%d %H:%M")},
        "methods": methods,
    }
    if not args.no_probe:
        print("linear probe:", file=sys.stderr)
        results["linear_probe"] = linear_probe(X, y, cv=5, random_state=0)
    out = Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    md = markdown_table(results)
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
