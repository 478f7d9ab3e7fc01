"""Duplicates and outliers on CIFAR-10 with EfficientNet-Lite0: accuracy on planted copies, and time.

Plants, next to the 10,000 CIFAR-10 test images, ``--copies`` altered copies of random
originals (an equal share of each kind in ``KINDS``: JPEG re-encode at quality 90/75/50/30, bicubic
resize 2x up or 0.75x down, a 1- or 2-pixel border crop)
and ``--distractors`` images that are not photos (flat colours, noise, stripes, text-like
marks). Embeds everything through the store (originals come from the cache when a previous
run embedded them), then:

- near duplicates: pair precision and recall of the planted (original, copy) pairs per cosine
  threshold; pairs of two CIFAR originals that get grouped are counted apart (the test set has
  a few real near duplicates of its own), and listed.
- outliers: how many distractors rank in the top 1% by LOF and by kNN distance.
- seconds of ``find_duplicates`` / ``find_outliers`` on the whole run (machine load printed).

Usage:  .venv/bin/python benchmarks/curate.py [--data ../shared/datasets/cifar10-test] [--copies 600]
        [--cache-dir DIR] [--work DIR]
Writes benchmarks/results/curate.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


KINDS = ("jpeg90", "jpeg75", "jpeg50", "jpeg30", "up2x", "down0.75x", "crop1px", "crop2px")


def _alter(img: Image.Image, kind: str, out: Path) -> Path:
    """One altered copy: JPEG re-encode at a quality, bicubic resize, or a border crop (pixels per side)."""
    if kind.startswith("jpeg"):
        path = out.with_suffix(".jpg")
        img.save(path, quality=int(kind[4:]))
        return path
    path = out.with_suffix(".png")
    if kind.startswith(("up", "down")):
        f = float(kind.removeprefix("up").removeprefix("down").removesuffix("x"))
        img = img.resize((round(img.width * f), round(img.height * f)), Image.BICUBIC)
    else:
        c = int(kind[4:].removesuffix("px"))
        img = img.crop((c, c, img.width - c, img.height - c))
    img.save(path)
    return path


def _distractor(i: int, rng: np.random.Generator, size: int = 32) -> Image.Image:
    kind = i % 4
    if kind == 0:
        return Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == 1:
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    if kind == 2:
        for s in range(0, size, 4):
            d.line([(s, 0), (s, size)], fill=(0, 0, 0), width=2)
    else:
        d.text((2, 10), f"#{i:03d}", fill=(0, 0, 0))
    return img


def build_manifest(data: Path, work: Path, n_copies: int, n_distract: int, per_class: int, seed: int = 0):
    """A manifest of the originals + planted copies + distractors; returns (manifest, pairs, distractors)."""
    from imgclust.pipeline.sources import discover

    rng = np.random.default_rng(seed)
    seen: dict[str, int] = {}
    originals = []
    for r in discover([str(data)], labels="folder"):
        seen[r.label] = seen.get(r.label, 0) + 1
        if seen[r.label] <= per_class:
            originals.append(r)
    (work / "planted").mkdir(parents=True, exist_ok=True)
    rows = [(r.path, r.label) for r in originals]
    pairs = []
    for j, i in enumerate(rng.choice(len(originals), n_copies, replace=False)):
        kind = KINDS[j % len(KINDS)]
        with Image.open(originals[i].path) as im:
            p = _alter(im.convert("RGB"), kind, work / "planted" / f"copy{j:04d}_{kind}")
        rows.append((str(p), originals[i].label))
        pairs.append((originals[i].path, str(p), kind))
    distract = []
    for i in range(n_distract):
        p = work / "planted" / f"distractor{i:03d}.png"
        _distractor(i, rng).save(p)
        rows.append((str(p), "distractor"))
        distract.append(str(p))
    manifest = work / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return manifest, pairs, distract


def pair_scores(group: np.ndarray, paths: list[str], pairs, distract) -> dict:
    """Planted-pair recall, precision (pairs with a copy), grouped original-original pairs.

    Pairs of two distractors (flat colours look alike to any encoder) are counted apart.
    """
    idx = {p: i for i, p in enumerate(paths)}
    planted = {frozenset((idx[a], idx[b])) for a, b, _ in pairs}
    copies = {idx[b] for _, b, _ in pairs}
    dis = {idx[p] for p in distract}
    found_planted = sum(group[a] >= 0 and group[a] == group[b] for a, b in map(tuple, planted))
    predicted, orig_orig, dis_pairs = 0, [], 0
    for g in set(group.tolist()) - {-1}:
        members = np.flatnonzero(group == g).tolist()
        for a, b in itertools.combinations(members, 2):
            if a in copies or b in copies:
                predicted += 1
            elif a in dis and b in dis:
                dis_pairs += 1
            else:
                orig_orig.append((paths[a], paths[b]))
    per_kind = {}
    for kind in KINDS:
        ks = [(idx[a], idx[b]) for a, b, k in pairs if k == kind]
        per_kind[kind] = sum(group[a] >= 0 and group[a] == group[b] for a, b in ks) / max(1, len(ks))
    return {"recall": found_planted / len(planted), "precision": found_planted / max(1, predicted),
            "recall_by_kind": per_kind, "original_pairs_grouped": len(orig_orig), "distractor_pairs_grouped": dis_pairs,
            "examples": orig_orig[:10]}


def scale(n: int, work: Path, dim: int = 1280, seed: int = 0) -> dict:
    """Seconds of find_duplicates / find_outliers on ``n`` random 1280-d vectors with 1% planted near copies."""
    from imgclust.analyze import cluster_embeddings
    from imgclust.explore.curate import find_duplicates, find_outliers
    from imgclust.pipeline.sources import ImageRecord

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    planted = rng.choice(n // 2, n // 100, replace=False)
    X[n - len(planted):] = X[planted] + 0.2 * rng.standard_normal((len(planted), dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    run = work / f"scale{n}"
    res = cluster_embeddings(X, [ImageRecord(f"/synthetic/{i}.png") for i in range(n)], reduce="pca", map="pca",
                             k=10, hashes=[f"h{i}" for i in range(n)])
    res.save(run)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    dup = find_duplicates(run, report=False)
    dup_s = time.perf_counter() - t
    t = time.perf_counter()
    find_outliers(run, report=False)
    out_s = time.perf_counter() - t
    row = {"n": n, "dim": dim, "planted_pairs": len(planted), "groups_found": dup.n_groups,
           "find_duplicates_s": round(dup_s, 2), "find_outliers_s": round(out_s, 2), "load_average": load}
    print(f"synthetic {n} x {dim}: duplicates {dup_s:.2f} s ({dup.n_groups} groups, {len(planted)} planted), "
          f"outliers {out_s:.2f} s; load {load:.1f}")
    return row


def _nearest_original(X, paths, pairs, distract) -> list[float]:
    """Percentiles of each CIFAR original's cosine to its most similar other original (the hard negatives)."""
    from imgclust.knn import knn

    skip = {b for _, b, _ in pairs} | set(distract)
    orig = [i for i, p in enumerate(paths) if p not in skip]
    _, sims = knn(X[orig], 1)
    return [round(float(v), 4) for v in np.percentile(sims[:, 0], [50, 90, 99, 100])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "cifar10-test")
    ap.add_argument("--per-class", type=int, default=100, help="CIFAR originals per class (1000 = all 10,000)")
    ap.add_argument("--copies", type=int, default=400)
    ap.add_argument("--scale", default="10000,50000", help="synthetic sizes for the timing of both commands")
    ap.add_argument("--distractors", type=int, default=20)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgclust-bench-curate"))
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    from imgclust.api import cluster_images
    from imgclust.explore.curate import duplicate_groups, find_duplicates, find_outliers
    from imgclust.rundir import load_run

    manifest, pairs, distract = build_manifest(args.data, args.work, args.copies, args.distractors, args.per_class)
    run_dir = args.work / "run"
    t = time.perf_counter()
    cluster_images([str(manifest)], encoder="efficientnet-lite0", labels="manifest", k=10, map="pca",
                   cache_dir=args.cache_dir or args.work / "cache", out=run_dir, plots=False, report=False,
                   progress=True)
    embed_s = time.perf_counter() - t
    run = load_run(run_dir)
    paths = [str(p) for p in run["table"].column("path").to_pylist()]
    X, hashes = run["embeddings"], run["table"].column("hash").to_pylist()
    by_t = {}
    nn_orig = _nearest_original(X, paths, pairs, distract)
    print("nearest other CIFAR original, cosine percentiles 50/90/99/max:", nn_orig)
    from imgclust.explore._phash import phashes

    t = time.perf_counter()
    codes = phashes(paths)
    phash_s = time.perf_counter() - t
    print(f"pHash of {len(paths)} images: {phash_s:.2f} s ({int(codes[1].sum())} hashed, the rest flat/unreadable)")
    for th, use in itertools.product((0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98), (False, True)):
        group, _ = duplicate_groups(X, hashes, threshold=th, phash=codes if use else None)
        key = f"{th}+phash" if use else str(th)
        by_t[key] = {"groups": int(group.max() + 1), **pair_scores(group, paths, pairs, distract)}
        s = by_t[key]
        print(f"threshold {th:.2f}{' + pHash' if use else '        '}: {s['groups']:4d} groups  recall "
              f"{s['recall']:.3f}  precision "
              f"{s['precision']:.3f}  by kind {json.dumps({k: round(v, 3) for k, v in s['recall_by_kind'].items()})}"
              f"  CIFAR original pairs grouped {s['original_pairs_grouped']}, distractor pairs "
              f"{s['distractor_pairs_grouped']}")
    load = os.getloadavg()[0]
    t = time.perf_counter()
    dup = find_duplicates(run_dir, threshold=0.95, report=False)
    dup_s = time.perf_counter() - t
    out_rank = {}
    t = time.perf_counter()
    for method in ("lof", "knn"):
        res = find_outliers(run_dir, method=method, contamination=0.01, report=False)
        top = set(res.to_pandas().query("outlier")["path"])
        out_rank[method] = {"distractors_in_top_1pct": len(top & set(distract)), "distractors": len(distract)}
        print(f"outliers by {method}: {out_rank[method]['distractors_in_top_1pct']}/{len(distract)} distractors "
              f"in the top 1% ({res.n_flagged} images)")
    out_s = (time.perf_counter() - t) / 2
    print(f"find_duplicates {dup_s:.2f} s ({dup.n_groups} groups), find_outliers {out_s:.2f} s per method, on "
          f"{len(paths)} images; load average {load:.1f} on {os.cpu_count()} cores")
    result = {"n_images": len(paths), "copies": len(pairs), "distractors": len(distract), "by_threshold": by_t,
              "nearest_original_cosine_p50_p90_p99_max": nn_orig, "find_duplicates_s": round(dup_s, 3),
              "phash_s": round(phash_s, 3),
              "find_outliers_s": round(out_s, 3), "outliers": out_rank,
              "embed_and_cluster_s": round(embed_s, 1), "load_average": load, "cpus": os.cpu_count(),
              "scale": [scale(int(n), args.work) for n in args.scale.split(",") if n.strip()]}
    out = ROOT / "benchmarks" / "results" / "curate.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
