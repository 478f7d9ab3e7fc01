"""EfficientNet-Lite0 input normalisation, before and after the fix (issue 13), on CIFAR-10.

Embeds the whole CIFAR-10 test folder twice through imgclust's store: with the weights' own
``(x - 127) / 128`` normalisation (the registered spec) and with ImageNet mean/std (the old,
wrong spec, kept in a separate cache so it never mixes with real runs). For each: the papers'
k-means protocol on all 10,000 images (10 inits x 3 seeds), the slow test's 1,000-image subset
(100 per class, one k-means), and a 5-fold linear probe.

Usage::

    .venv/bin/python benchmarks/normalisation.py            # writes benchmarks/results/normalisation.json
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "cifar10-test"
OUT = ROOT / "benchmarks" / "results" / "normalisation.json"
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _scores(emb) -> dict:
    from imgclust.analyze import cluster_embeddings
    from imgclust.explore.probe import kmeans_baseline, linear_probe

    X, y = emb.embeddings, np.array([r.label for r in emb.records])
    km = kmeans_baseline(X, y, 10, n_init=10, seeds=(0, 1, 2))
    per: dict[str, list[int]] = {}
    for i, r in enumerate(emb.records):
        per.setdefault(r.label, []).append(i)
    sub = [i for c in sorted(per) for i in per[c][:100]]
    res = cluster_embeddings(X[sub], [emb.records[i] for i in sub], reduce="none", map="pca", method="kmeans", k=10)
    probe = linear_probe(X, y, cv=5)
    plain = lambda d: {k: v for k, v in d.items() if isinstance(v, (int, float))}  # noqa: E731
    return {"kmeans_10k": plain(km), "subset_1k": plain(res.metrics["external"]), "probe": plain(probe)}


def main() -> int:
    from imgclust.encoders import create_encoder, get_spec
    from imgclust.pipeline.embed import embed_images
    from imgclust.pipeline.sources import discover

    if not DATA.is_dir():
        print(f"CIFAR-10 folder not found: {DATA}", file=sys.stderr)
        return 2
    records = sorted(discover([str(DATA)], labels="folder"), key=lambda r: r.path)
    spec = get_spec("efficientnet-lite0")
    out = {}
    with tempfile.TemporaryDirectory() as old_cache:
        for tag, sp, cache in [("after: (x-127)/128", spec, None),
                               ("before: ImageNet mean/std", dataclasses.replace(spec, **IMAGENET), old_cache)]:
            emb = embed_images(records, encoder=create_encoder(sp, device="cpu"), cache_dir=cache,
                               progress=sys.stderr.isatty())
            out[tag] = _scores(emb)
            print(tag, json.dumps(out[tag]), file=sys.stderr, flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    print("| normalisation | k-means ACC (10k) | k-means NMI (10k) | 1k subset ACC | 1k subset NMI | linear probe |")
    print("|---|---|---|---|---|---|")
    for tag, r in out.items():
        km, sub, pr = r["kmeans_10k"], r["subset_1k"], r["probe"]
        print(f"| {tag} | {km['acc']:.3f} ± {km['acc_std']:.3f} | {km['nmi']:.3f} ± {km['nmi_std']:.3f} | "
              f"{sub['acc']:.3f} | {sub['nmi']:.3f} | {pr['acc']:.3f} ± {pr['acc_std']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
