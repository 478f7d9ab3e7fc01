"""Embedding throughput of efficientnet-lite0 on the CIFAR-10 folder, and the demo's end-to-end time.

Usage:  .venv/bin/python benchmarks/embed.py [--data ../shared/datasets/cifar10-test] [--n 1000]
Writes benchmarks/results/embed.json and prints a summary. Not part of the test suite.
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

ROOT = Path(__file__).resolve().parents[1]


def embed_throughput(data: Path, n: int, batch_sizes: list[int], device: str) -> list[dict]:
    from imgclust.encoders import create_encoder
    from imgclust.pipeline.embed import embed_records
    from imgclust.pipeline.sources import discover

    records = discover([str(data)], labels="folder")
    per_class = max(1, n // 10)
    by_class: dict[str, list] = {}
    for r in records:
        by_class.setdefault(r.label, []).append(r)
    subset = [r for rs in by_class.values() for r in rs[:per_class]]
    enc = create_encoder("efficientnet-lite0", device=device)
    enc.encode_images([__import__("PIL.Image").Image.new("RGB", (32, 32))] * 4)  # warm-up
    rows = []
    for bs in batch_sizes:
        t = time.perf_counter()
        res = embed_records(subset, enc, store=None, batch_size=bs, progress=False)
        dt = time.perf_counter() - t
        rows.append({"batch_size": bs, "images": len(res.records), "seconds": round(dt, 2),
                     "images_per_s": round(len(res.records) / dt, 1),
                     "encode_only_images_per_s": round(res.images_per_second, 1)})
        print(f"batch {bs:4d}: {rows[-1]['images_per_s']:.1f} img/s end to end "
              f"({rows[-1]['encode_only_images_per_s']:.1f} img/s decode+encode) on {len(res.records)} images")
    return rows


def demo_time() -> dict:
    exe = Path(sys.executable).with_name("imgclust")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, IMGCLUST_CACHE=str(Path(tmp) / "cache"))
        t = time.perf_counter()
        subprocess.run([str(exe), "demo", "--out", str(Path(tmp) / "demo"), "--quiet"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([str(exe), "demo", "--out", str(Path(tmp) / "demo"), "--quiet"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        warm = time.perf_counter() - t
        run = json.loads((Path(tmp) / "demo" / "run.json").read_text())
        metrics = json.loads((Path(tmp) / "demo" / "metrics.json").read_text())
    print(f"demo: {cold:.1f} s cold (empty cache), {warm:.1f} s warm (embeddings cached); "
          f"ACC {metrics['external']['acc']:.3f} NMI {metrics['external']['nmi']:.3f}")
    return {"cold_seconds": round(cold, 1), "warm_seconds": round(warm, 1), "timings_warm": run["timings"],
            "external": metrics["external"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "cifar10-test")
    ap.add_argument("--n", type=int, default=1000, help="images to embed (balanced over classes)")
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embed.json")
    args = ap.parse_args()
    import torch

    result = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}}
    if args.data.is_dir():
        result["throughput"] = embed_throughput(args.data, args.n, [int(b) for b in args.batch_sizes.split(",")],
                                                args.device)
    else:
        print(f"{args.data} not found: skipping the throughput measurement")
    if not args.skip_demo:
        result["demo"] = demo_time()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
