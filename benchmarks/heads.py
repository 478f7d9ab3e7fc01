"""Benchmark the deep clustering heads (SCAN, TEMI) against the k-means baseline.

Embeds a labelled image folder (default: the CIFAR-10 test set in ``../shared``) with
EfficientNet-Lite0 once (through imgclust's embedding cache), then runs
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


def load_embeddings(folder: str | Path, per_class: int | None = None,
                    encoder: str = "efficientnet-lite0") -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and integer labels of a class-per-subfolder image folder, through imgclust's store.

    Vectors come from the same embedding cache every imgclust run uses (keyed by file content and
    encoder fingerprint, so a change of weights or preprocessing re-embeds): the first call embeds,
    later calls and subsets are instant.

    Args:
        folder: Image folder with one subfolder per class.
        per_class: Keep the first ``per_class`` images of each class in path order (``None``/0 = all).
        encoder: imgclust encoder name.

    Returns:
        ``(X, y)``: (N, D) float32 L2-normalised embeddings and (N,) int64 labels.
    """
    from imgclust.pipeline.embed import embed_images
    from imgclust.pipeline.sources import discover

    records = sorted(discover([str(folder)], labels="folder"), key=lambda r: r.path)
    if per_class:
        by_class: dict[str, list] = {}
        for r in records:
            by_class.setdefault(r.label, []).append(r)
        records = sorted((r for rs in by_class.values() for r in rs[:per_class]), key=lambda r: r.path)
    emb = embed_images(records, encoder=encoder, device="cpu", progress=sys.stderr.isatty())
    classes = sorted({r.label for r in emb.records})
    y = np.asarray([classes.index(r.label) for r in emb.records], np.int64)
    return emb.embeddings, y


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
