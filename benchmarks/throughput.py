"""Embedding throughput: a naive eager-torch loop vs imgclust's embed stage with each runtime.

Two sets, one run, side by side on this machine:

* ``cifar``: 1,000 CIFAR-10 test JPEGs (100 per class) from ``../shared/datasets/cifar10-test``;
* ``large``: 200 large photos (scikit-image's colour photos, each copy randomly cropped/flipped
  so every file is distinct, upscaled to 4000x3000 and saved as JPEG q90) in a temp dir.

(a) ``naive``: the loop a user would write in ten lines: PIL open + convert, resize to 224,
    normalise, batch 64, eager torch ``extract_features`` + average pool. Same model, same
    normalisation as imgclust.
(b) ``imgclust-<runtime>``: :func:`imgclust.pipeline.embed.embed_records` end to end (hash,
    decode, encode, write the store) into a fresh cache, model build excluded (reported apart).

Every configuration runs in its own subprocess, so its peak RSS is its own. The machine is
shared, so the load average is recorded before and after each measurement, and speed-ups are
ratios to the naive loop measured in the same run. ``--rss-images 10000`` also embeds that many
CIFAR images with imgclust's default runtime and records the peak RSS (the < 2 GB target).

Usage:  .venv/bin/python benchmarks/throughput.py [--cifar 1000] [--large 200] [--rss-images 10000]
Writes benchmarks/results/throughput.json and prints a table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "cifar10-test"
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]


def cifar_paths(root: Path, n: int) -> list[str]:
    """``n`` CIFAR JPEGs, the same number from each class folder (sorted, so the set is fixed)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    per = max(1, -(-n // len(classes)))
    out = [str(p) for c in classes for p in sorted(c.glob("*.jpg"))[:per]]
    return out[:n]


def make_large_photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct 4000x3000 JPEG q90 photos (generated once into ``folder``, reused after)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:04d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return [str(p) for p in paths]
    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS]
    for i, path in enumerate(paths):
        img = sources[i % len(sources)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crop.resize((4000, 3000), Image.BICUBIC).save(path, quality=90)
    return [str(p) for p in paths]


def naive_loop(paths: list[str], batch: int = 64) -> dict:
    """The reference: open, resize, normalise, batch, eager torch. Returns images and seconds."""
    import numpy as np
    import torch
    from PIL import Image

    from imgclust.encoders.efficientnet import load_efficientnet_lite0
    from imgclust.encoders.registry import LITE_MEAN, LITE_STD

    model = load_efficientnet_lite0()
    mean, std = np.asarray(LITE_MEAN, np.float32), np.asarray(LITE_STD, np.float32)
    t0 = time.perf_counter()
    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), batch):
            arrs = [np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BICUBIC), np.float32) / 255.0
                    for p in paths[s:s + batch]]
            x = torch.from_numpy(((np.stack(arrs) - mean) / std).transpose(0, 3, 1, 2).copy())
            out.append(model.extract_features(x).mean(dim=(2, 3)).numpy())
    seconds = time.perf_counter() - t0
    return {"images": int(sum(len(o) for o in out)), "seconds": seconds}


def imgclust_embed(paths: list[str], runtime: str, models: str, batch: int = 64) -> dict:
    """imgclust's embed stage end to end into a fresh store; model build (and one-time export) timed apart."""
    from imgclust.encoders import create_encoder
    from imgclust.pipeline.embed import embed_records, open_store
    from imgclust.pipeline.sources import ImageRecord

    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        enc = create_encoder("efficientnet-lite0", device="cpu", runtime=runtime, cache_dir=models)
        build = time.perf_counter() - t
        store = open_store(enc, cache)
        t0 = time.perf_counter()
        res = embed_records([ImageRecord(p) for p in paths], enc, store=store, batch_size=batch, progress=False)
        seconds = time.perf_counter() - t0
    return {"images": len(res.records), "seconds": seconds, "build_seconds": build, "runtime": enc.runtime,
            "skipped": len(res.skipped)}


def _child(spec: dict) -> None:
    """Run one configuration (in a subprocess) and print its JSON result on the last line."""
    paths = json.loads(Path(spec["paths"]).read_text())
    load_before = os.getloadavg()
    if spec["kind"] == "naive":
        row = naive_loop(paths)
    else:
        row = imgclust_embed(paths, spec["runtime"], spec["models"])
    row.update(load_before=[round(v, 2) for v in load_before], load_after=[round(v, 2) for v in os.getloadavg()],
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    print(json.dumps(row))


def run_config(kind: str, runtime: str | None, paths_file: Path) -> dict:
    """One configuration in a fresh interpreter; its JSON row plus images/s."""
    # The ONNX export is a one-time cost per machine: keep it beside the paths so it is reused.
    spec = json.dumps({"kind": kind, "runtime": runtime, "paths": str(paths_file),
                       "models": str(paths_file.parent / "models")})
    proc = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True,
                          env={**os.environ, "OV_TELEMETRY_DISABLE": "1"})
    if proc.returncode:
        raise RuntimeError(f"{kind}/{runtime} failed:\n{proc.stderr[-2000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["images_per_s"] = round(row["images"] / row["seconds"], 1)
    return row


def measure_set(name: str, paths: list[str], runtimes: list[str], work: Path) -> list[dict]:
    """The naive loop and imgclust with each runtime on one image set; ratios to the naive loop."""
    paths_file = work / f"{name}-paths.json"
    paths_file.write_text(json.dumps(paths))
    rows = []
    for kind, rt in [("naive", None)] + [("imgclust", r) for r in runtimes]:
        row = run_config(kind, rt, paths_file)
        row.update(set=name, config="naive-torch-batch64" if kind == "naive" else f"imgclust-{rt}")
        rows.append(row)
        print(f"  {name:6s} {row['config']:22s} {row['images_per_s']:7.1f} img/s  rss {row['peak_rss_mb']:7.0f} MB"
              f"  load {row['load_before'][0]:.1f}->{row['load_after'][0]:.1f}", flush=True)
    naive = rows[0]["images_per_s"]
    for row in rows:
        row["x_naive"] = round(row["images_per_s"] / naive, 2) if naive else None
    return rows


def print_table(rows: list[dict]) -> None:
    """The markdown table the README shows."""
    print("\n| set | configuration | images/s | x naive | peak RSS (MB) | load avg (1 min, before -> after) |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['set']} | {r['config']} | {r['images_per_s']:.1f} | {r['x_naive']:.2f} | "
              f"{r['peak_rss_mb']:.0f} | {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f} |")


def main() -> None:
    """Parse arguments, measure every configuration, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cifar", type=int, default=1000)
    ap.add_argument("--large", type=int, default=200)
    ap.add_argument("--rss-images", type=int, default=10000, help="CIFAR images for the RSS run (0: skip)")
    ap.add_argument("--runtimes", default="torch,onnx,openvino")
    ap.add_argument("--work", type=Path, default=None, help="Keep generated photos here (default: temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(json.loads(args.child))
    from imgclust.encoders.runtime import resolve_runtime, runtime_available

    runtimes = [r for r in args.runtimes.split(",") if runtime_available(r)]
    work = args.work or Path(tempfile.mkdtemp(prefix="imgclust-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"rows": [], "rss_run": None, "default_cpu_runtime": resolve_runtime("auto", "cpu"),
              "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
              "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:])}
    if args.cifar and args.data.is_dir():
        result["rows"] += measure_set("cifar", cifar_paths(args.data, args.cifar), runtimes, work)
        _save(args.out, result, t0)  # a long run keeps what it measured so far
    if args.large:
        result["rows"] += measure_set("large", make_large_photos(work / "large", args.large), runtimes, work)
        _save(args.out, result, t0)
    if args.rss_images and args.data.is_dir():
        paths_file = work / "rss-paths.json"
        paths_file.write_text(json.dumps(cifar_paths(args.data, args.rss_images)))
        rss = result["rss_run"] = run_config("imgclust", resolve_runtime("auto", "cpu"), paths_file)
        print(f"  rss    {rss['images']} images with {rss['runtime']}: peak RSS {rss['peak_rss_mb']:.0f} MB, "
              f"{rss['images_per_s']:.1f} img/s", flush=True)
    print_table(result["rows"])
    _save(args.out, result, t0)
    print(f"\nwrote {args.out}")


def _save(out: Path, result: dict, t0: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
