"""Do embedded augmented views help SCAN and TEMI? (``imgclust run --augment N``), measured on CIFAR-10.

Takes the first ``--per-class`` images of each class of a labelled folder (default: 200 of each
of the CIFAR-10 test set's 10 classes = 2,000 images, a subset because the CPU is shared),
embeds them and ``--views`` augmented views of each with EfficientNet-Lite0 (through the cache,
so re-runs only cluster), then clusters exactly as ``imgclust run`` does (PCA-50, k=10) with:

* ``none``: the originals only, no views;
* ``views``: the originals, each with its views as the heads' augmentations (``--augment-as views``);
* ``points``: originals + views as extra points, no views given to the method;
* ``both``: extra points, and every row's other views as its augmentations (the default).

Scores are ACC/NMI/ARI on the original images only (what ``metrics.json``'s ``augment`` entry
holds), mean +- std over ``--seeds`` seeds. Writes ``benchmarks/results/augment.json``.

Usage::

    .venv/bin/python benchmarks/augment.py                      # 2,000 images, 2 views (a 3x dataset), 3 seeds
    .venv/bin/python benchmarks/augment.py --modes none,views --methods scan

This is a script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-test"
RESULTS = ROOT / "benchmarks" / "results"


def _records(folder, per_class: int):
    from imgclust.pipeline.sources import discover

    by: dict[str, list] = {}
    for r in sorted(discover([str(folder)], labels="folder"), key=lambda r: r.path):
        by.setdefault(r.label, []).append(r)
    return [r for rs in by.values() for r in rs[:per_class]]


def _one(emb, views, method: str, mode: str, seed: int) -> dict:
    from imgclust.analyze import cluster_embeddings
    from imgclust.augment import augmented_set, summarize

    t = time.perf_counter()
    if mode == "none":
        res = cluster_embeddings(emb.embeddings, emb.records, method=method, k=10, random_state=seed,
                                 coords=np.zeros((len(emb.records), 2), np.float32))
        ext = res.metrics["external"]
    else:
        aug = augmented_set(emb, views, mode, seed=0)
        res = cluster_embeddings(aug.embeddings, aug.records, method=method, k=10, random_state=seed,
                                 views=aug.views, view_index=aug.view_index,
                                 coords=np.zeros((len(aug.records), 2), np.float32))
        ext = summarize(res, aug, res.config.get("views_used", False))["external_originals"]
    return {**{k: float(ext[k]) for k in ("acc", "nmi", "ari")}, "wall_s": time.perf_counter() - t,
            "n_points": int(len(res.labels))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="kmeans,scan,temi")
    ap.add_argument("--modes", default="none,views,points,both")
    ap.add_argument("--out", default=str(RESULTS / "augment.json"))
    args = ap.parse_args()
    import torch

    from imgclust.augment import embed_views
    from imgclust.pipeline.embed import embed_images

    torch.set_num_threads(1)
    if not Path(args.data).is_dir():
        raise SystemExit(f"no data at {args.data}")
    t0 = time.perf_counter()
    emb = embed_images(_records(args.data, args.per_class), "efficientnet-lite0", progress=True)
    views = embed_views(emb.records, emb.hashes, emb.encoder, args.views, seed=0, progress=True)
    embed_s = time.perf_counter() - t0
    out = {"meta": {"data": Path(args.data).name, "n": len(emb.records), "views": args.views, "seeds": args.seeds,
                    "encoder": "efficientnet-lite0", "reduce": "pca-50", "k": 10, "cpus": os.cpu_count(),
                    "load_1min": os.getloadavg()[0], "embed_s": embed_s,
                    "date": time.strftime("%Y-%m-%d %H:%M")}, "results": []}
    print("| method | mode | points | ACC | NMI | ARI | wall s/seed |\n|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        for mode in args.modes.split(","):
            if method == "kmeans" and mode in ("views",):
                continue  # k-means takes no views: identical to "none"
            runs = [_one(emb, views, method, mode, s) for s in range(args.seeds)]
            row = {"method": method, "mode": mode, "n_points": runs[0]["n_points"], "runs": runs}
            for key in ("acc", "nmi", "ari", "wall_s"):
                vals = np.array([r[key] for r in runs])
                row[key], row[f"{key}_std"] = float(vals.mean()), float(vals.std())
            out["results"].append(row)
            print(f"| {method} | {mode} | {row['n_points']} | {row['acc']:.3f} ± {row['acc_std']:.3f} | "
                  f"{row['nmi']:.3f} ± {row['nmi_std']:.3f} | {row['ari']:.3f} ± {row['ari_std']:.3f} | "
                  f"{row['wall_s']:.1f} |", flush=True)
            out["meta"]["load_1min_end"] = os.getloadavg()[0]
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
