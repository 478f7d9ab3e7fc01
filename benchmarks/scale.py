"""Scale: synthetic unit-norm mixtures through store -> k-means -> report, seconds and peak RSS per stage.

Usage:
    .venv/bin/python benchmarks/scale.py [--sizes 100000 1000000] [--ks 100 1000] [--dim 512]
                                         [--map pca] [--dtype float32] [--ray-images 2000]
                                         [--heads scan temi] [--head-sizes 100000] [--head-epochs 2]
                                         [--ray-rounds 2] [--ray-actors 0]

Each stage runs in its own subprocess so its peak RSS (the child's ``ru_maxrss``) is its own:
``fill`` (vectors written to a fresh store as memory-mapped shards, chunk by chunk), ``kmeans``
(open the store, k-means fit on a sample + streamed assignment of every row), and ``pipeline``
(open the store, the full run: clustering, scores, 2-D map on a stratified sample, run directory
with a reference to the store, plots, report.html on a stratified 20,000-point sample); with
``--heads``, ``head`` (SCAN or TEMI, 2 heads, ``--head-epochs`` epochs, trained in minibatches
gathered from the store's memory map, kNN neighbours mined through faiss). The load
average is recorded with every row (the CPU is shared). ``--ray-images N`` also times the embed
stage of N real CIFAR-10 images with the local and the Ray engine in the same run, alternating
(local, ray, local, ray) to cancel drift, each into an empty cache of its own; the ratio is
given with and without Ray's start-up (``ray.init``).
Writes benchmarks/results/scale.json and prints a table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-test"


# ---------------------------------------------------------------- worker side (one stage per process)
def _mixture_chunks(n: int, dim: int, components: int, chunk: int = 100_000, seed: int = 0):
    """Unit-norm vectors around ``components`` random unit centres, ``chunk`` rows at a time."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((components, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centers[rng.integers(0, components, m)] + rng.standard_normal((m, dim)).astype(np.float32) * (
            0.6 / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield s, x


def _store(cache: str, dim: int, dtype: str = "float32"):
    from imgclust.pipeline.store import EmbeddingStore

    return EmbeddingStore(cache, "synthetic", dim, dtype=dtype, spec={"name": "synthetic mixture"})


def stage_fill(cache: str, n: int, dim: int, components: int, dtype: str) -> dict:
    store = _store(cache, dim, dtype)
    for s, x in _mixture_chunks(n, dim, components):
        store.add([f"{i:012d}" for i in range(s, s + len(x))], x)
    size = sum(p.stat().st_size for p in store.dir.iterdir())
    return {"rows": len(store), "store_mb": round(size / 2**20, 1)}


def stage_kmeans(cache: str, dim: int, k: int) -> dict:
    from imgclust.cluster import KMeans

    t = time.perf_counter()
    X = _store(cache, dim).vectors()
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    km = KMeans(n_clusters=k, random_state=0).fit(X)
    return {"open_s": round(t_open, 2), "fit_assign_s": round(time.perf_counter() - t, 2),
            "memmap": isinstance(X, np.memmap), "n_iter": km.n_iter_, "inertia": km.inertia_}


def stage_pipeline(cache: str, dim: int, k: int, out: str, map_: str) -> dict:
    from imgclust.analyze import cluster_embeddings
    from imgclust.pipeline.sources import ImageRecord
    from imgclust.report import build_report
    from imgclust.report.plots import save_all_plots

    t0 = time.perf_counter()
    store = _store(cache, dim)
    hashes, X = store.hashes(), store.vectors()
    records = [ImageRecord(f"synthetic/{h}.png") for h in hashes]
    t = time.perf_counter()
    res = cluster_embeddings(X, records, reduce="none", map=map_, method="kmeans", k=k, hashes=hashes)
    t_analyze = time.perf_counter() - t
    res.store = store
    t = time.perf_counter()
    res.save(out)
    t_save = time.perf_counter() - t
    t = time.perf_counter()
    save_all_plots(res, Path(out) / "plots")
    t_plots = time.perf_counter() - t
    t = time.perf_counter()
    report = build_report(out)
    t_report = time.perf_counter() - t
    return {"analyze_s": round(t_analyze, 2), "cluster_s": round(res.timings["cluster"], 2),
            "map_s": round(res.timings["map"], 2), "save_s": round(t_save, 2), "plots_s": round(t_plots, 2),
            "report_s": round(t_report, 2), "store_to_report_s": round(time.perf_counter() - t0, 2),
            "report_mb": round(report.stat().st_size / 2**20, 2),
            "referenced": (Path(out) / "embeddings.ref.json").exists()}


def stage_head(cache: str, dim: int, method: str, k: int, epochs: int) -> dict:
    """SCAN or TEMI on the store's vectors (memory map / lazy multi-shard view), a few epochs, minibatches."""
    from imgclust.cluster.heads.scan import SCAN
    from imgclust.cluster.heads.temi import TEMI

    X = _store(cache, dim).vectors()
    common = dict(n_clusters=k, n_heads=2, epochs=epochs, min_steps=0, patience=None, random_state=0)
    est = SCAN(self_label_epochs=1, **common) if method == "scan" else TEMI(**common)
    t = time.perf_counter()
    est.fit(X)
    return {"fit_s": round(time.perf_counter() - t, 2), "input": type(X).__name__, "epochs": len(est.loss_history_),
            "n_neighbors": int(est.neighbors_.shape[1]), "clusters_used": int(len(np.unique(est.labels_)))}


def stage_embed(engine: str, n: int, cache: str) -> dict:
    """Embed ``n`` CIFAR images into the empty cache ``cache``; Ray's start-up is timed on its own."""
    from imgclust.pipeline.embed import embed_images
    from imgclust.pipeline.sources import discover

    os.environ["IMGCLUST_CACHE"] = cache  # nothing is served from the shared cache (ONNX export included)
    records = discover([str(CIFAR)], labels="folder")[:n]
    t = time.perf_counter()
    startup = 0.0
    if engine == "ray":
        from imgclust.pipeline._ray import ray_init

        ray_init()
        startup = time.perf_counter() - t
    t1 = time.perf_counter()
    res = embed_images(records, encoder="efficientnet-lite0", cache_dir=cache, engine=engine)
    end = time.perf_counter()
    return {"images": len(res.records), "seconds": round(end - t, 2), "ray_startup_s": round(startup, 2),
            "seconds_without_startup": round(end - t1, 2), "encode_phase_s": round(res.seconds, 2),
            "images_per_s": round(len(res.records) / (end - t), 1),
            "images_per_s_without_startup": round(len(res.records) / (end - t1), 1),
            "runtime": getattr(res.encoder, "runtime", "?"), "actors": os.environ.get("IMGCLUST_RAY_ACTORS", "auto"),
            "checksum": float(np.abs(res.embeddings).sum())}


def _worker(argv: list[str]) -> None:
    stage, params = argv[0], json.loads(argv[1])
    out = {"stage_started_load": os.getloadavg()[0]}
    out.update({"fill": stage_fill, "kmeans": stage_kmeans, "pipeline": stage_pipeline, "head": stage_head,
                "embed": stage_embed}[stage](**params))
    out["stage_ended_load"] = os.getloadavg()[0]
    import resource

    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------- driver side
def run_stage(stage: str, **params) -> dict:
    """Run one stage in a child process; returns its result, its wall seconds and its own peak RSS (MB)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--worker", stage, json.dumps(params)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"stage {stage} failed:\n{err[-3000:]}")
    res = json.loads(line[7:])
    res["wall_s"] = round(time.perf_counter() - t, 2)
    return res


def bench_sizes(sizes, ks, dim, components, map_, dtype, kmeans_stage: bool = True, heads=(),
                head_sizes=(), head_k: int = 100, head_epochs: int = 2) -> list[dict]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("SCALE_TMP")) as tmp:
            cache = str(Path(tmp) / "cache")
            fill = run_stage("fill", cache=cache, n=n, dim=dim, components=components, dtype=dtype)
            print(f"n={n:,}: fill {fill['wall_s']}s, {fill.get('peak_rss_mb')} MB RSS, store {fill['store_mb']} MB",
                  flush=True)
            for k in ks:
                km = run_stage("kmeans", cache=cache, dim=dim, k=k) if kmeans_stage else None
                if km:
                    print(f"  k={k}: k-means fit+assign {km['fit_assign_s']}s, {km.get('peak_rss_mb')} MB", flush=True)
                pipe = run_stage("pipeline", cache=cache, dim=dim, k=k, out=str(Path(tmp) / f"run-{k}"), map_=map_)
                print(f"  k={k}: store->report {pipe['store_to_report_s']}s, {pipe.get('peak_rss_mb')} MB, "
                      f"report {pipe['report_mb']} MB", flush=True)
                rows.append({"n": n, "k": k, "dim": dim, "dtype": dtype, "map": map_, "fill": fill, "kmeans": km,
                             "pipeline": pipe})
            for method in heads if n in head_sizes else ():
                res = run_stage("head", cache=cache, dim=dim, method=method, k=head_k, epochs=head_epochs)
                print(f"  {method} k={head_k}, {head_epochs} epochs: fit {res['fit_s']}s, {res.get('peak_rss_mb')} MB "
                      f"({res['input']})", flush=True)
                rows.append({"n": n, "k": head_k, "dim": dim, "head": method, "fill": fill, "fit": res})
    return rows


def bench_ray(n: int, rounds: int = 2) -> dict | None:
    """Local and Ray engines alternately (local, ray, local, ray, ...), each into an empty cache of its own."""
    if not CIFAR.is_dir():
        print(f"{CIFAR} not found: skipping the Ray embed comparison")
        return None
    runs: list[dict] = []
    for r in range(rounds):
        for engine in ("local", "ray"):
            with tempfile.TemporaryDirectory(dir=os.environ.get("SCALE_TMP")) as tmp:
                row = {"engine": engine, "round": r, **run_stage("embed", engine=engine, n=n, cache=str(Path(tmp)))}
            runs.append(row)
            print(f"embed {n} CIFAR images, {engine} (round {r}): {row['images_per_s']} img/s in {row['seconds']}s "
                  f"({row['images_per_s_without_startup']} img/s without Ray start-up {row['ray_startup_s']}s), "
                  f"load {row['stage_started_load']:.1f}-{row['stage_ended_load']:.1f}", flush=True)

    def total(engine: str, key: str) -> float:  # images / summed seconds over the rounds
        rows = [x for x in runs if x["engine"] == engine]
        return sum(x["images"] for x in rows) / sum(x[key] for x in rows)

    ratio = round(total("ray", "seconds") / total("local", "seconds"), 3)
    ratio_warm = round(total("ray", "seconds_without_startup") / total("local", "seconds_without_startup"), 3)
    return {"runs": runs, "checksums_equal": len({round(x["checksum"], 1) for x in runs}) == 1,
            "local_images_per_s": round(total("local", "seconds"), 1),
            "ray_images_per_s": round(total("ray", "seconds"), 1),
            "ray_images_per_s_without_startup": round(total("ray", "seconds_without_startup"), 1),
            "ray_over_local": ratio, "ray_over_local_without_startup": ratio_warm}


def _table(rows: list[dict]) -> str:
    head = ("| N | k | fill store (s / MB RSS) | k-means fit + assign (s / MB RSS) | store -> report (s / MB RSS) "
            "| of which cluster / map / report (s) | report.html (MB) | load avg |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if "head" in r:
            continue
        f, km, p = r["fill"], r["kmeans"] or {}, r["pipeline"]
        lines.append(f"| {r['n']:,} | {r['k']} | {f['wall_s']} / {f.get('peak_rss_mb')} | "
                     f"{km.get('fit_assign_s', '-')} / {km.get('peak_rss_mb', '-')} | "
                     f"{p['store_to_report_s']} / {p.get('peak_rss_mb')} | "
                     f"{p['cluster_s']} / {p['map_s']} / {p['report_s']} | {p['report_mb']} | "
                     f"{p['stage_started_load']:.1f}-{p['stage_ended_load']:.1f} |")
    heads = [r for r in rows if "head" in r]
    if heads:
        lines += ["", "| N | head | k | epochs | fit (s) | peak RSS (MB) | input | load avg |", "|" + "---|" * 8]
        lines += [f"| {r['n']:,} | {r['head']} | {r['k']} | {r['fit']['epochs']} | {r['fit']['fit_s']} | "
                  f"{r['fit'].get('peak_rss_mb')} | {r['fit']['input']} | "
                  f"{r['fit']['stage_started_load']:.1f}-{r['fit']['stage_ended_load']:.1f} |" for r in heads]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--ks", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--components", type=int, default=1000, help="Mixture components of the synthetic data.")
    ap.add_argument("--map", default="pca", help="Map reducer (fitted on a 20,000-row stratified sample).")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--ray-images", type=int, default=0, help="Also compare embed engines on N CIFAR images.")
    ap.add_argument("--ray-rounds", type=int, default=2, help="Alternating local/ray rounds of the comparison.")
    ap.add_argument("--ray-actors", type=int, default=0,
                    help="Ray actors (0: one per CPU, one intra-op thread each; 1: one actor with every thread).")
    ap.add_argument("--no-kmeans-stage", action="store_true",
                    help="Skip the standalone k-means stage (the pipeline stage still times clustering).")
    ap.add_argument("--heads", nargs="*", default=[], choices=["scan", "temi"],
                    help="Also train these heads on the store's vectors (2 heads, minibatches over the memory map).")
    ap.add_argument("--head-sizes", type=int, nargs="+", default=[100_000], help="Sizes at which the heads run.")
    ap.add_argument("--head-k", type=int, default=100, help="Clusters of the heads.")
    ap.add_argument("--head-epochs", type=int, default=2, help="Epochs of the heads (SCAN: + 1 self-label epoch).")
    ap.add_argument("--threads", type=int, default=0,
                    help="OMP/BLAS threads in the stages (0: library default). On an oversubscribed machine "
                         "1 avoids OpenMP spin-waiting.")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = ap.parse_args()
    t = time.time()
    result = {"started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)), "cpus": os.cpu_count(),
              "load_at_start": os.getloadavg(), "argv": sys.argv[1:]}
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)  # inherited by the stage processes
    result["threads"] = args.threads or "default"
    sizes = [n for n in args.sizes if n > 0]  # --sizes 0: only the Ray comparison
    result["rows"] = bench_sizes(sizes, args.ks, args.dim, args.components, args.map, args.dtype,
                                 not args.no_kmeans_stage, args.heads, args.head_sizes, args.head_k,
                                 args.head_epochs) if sizes else []
    if args.ray_actors:
        os.environ["IMGCLUST_RAY_ACTORS"] = str(args.ray_actors)
    if args.ray_images:
        result["ray_embed"] = bench_ray(args.ray_images, args.ray_rounds)
    result["load_at_end"] = os.getloadavg()
    result["table_md"] = _table(result["rows"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(result["table_md"])
    print(f"load average at start {result['load_at_start']}, at end {result['load_at_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
