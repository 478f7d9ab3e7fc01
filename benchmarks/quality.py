"""Clustering quality: k-means vs SCAN vs TEMI vs TURTLE, on Lite0 alone and on several encoders.

Sets (all labelled, all offline):

- ``cifar10``: the CIFAR-10 test set in ``../shared/datasets/cifar10-test`` (``--per-class`` images
  of each class in path order; 1000 = all 10,000).
- ``digits``: scikit-learn's bundled handwritten digits as 32x32 PNGs (``quality_data.py``).
- ``emoji``: 1,906 Noto emoji drawings in 9 Unicode categories, from the pinned npm package
  ``emoji-datasource-google@16.0.0`` (``quality_data.py``; needs ``npm`` once).

Every set is embedded through imgclust's store with each encoder (cached per encoder fingerprint,
rows aligned by image: :func:`imgclust.pipeline.multi.embed_multi`). For each space choice (Lite0
alone; Lite0+Lite1(+Lite2) side by side) each method runs with ``--seeds`` seeds; ACC/NMI/ARI are
reported as mean +- std with seconds per seed. Every method gets what ``imgclust run --reduce pca
--dims N`` gives it: each encoder's top N (``--n-components``) principal axes, side by side
(k-means, SCAN and TEMI see the concatenation; TURTLE takes the blocks as separate spaces).
A 5-fold logistic-regression probe is the supervised ceiling.
Label-free model selection: the method whose clusters have the best silhouette in a UMAP map of
the Lite0 vectors is "picked"; we report whether it is the best by ACC.

Usage::

    .venv/bin/python benchmarks/quality.py --per-class 100 --digits-per-class 40 --seeds 3

Writes ``benchmarks/results/quality.json`` and ``quality.md``. This is a script, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-test"
RESULTS = ROOT / "benchmarks" / "results"
LITES = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


def _records(folder: Path, per_class: int | None):
    from imgclust.pipeline.sources import discover

    records = sorted(discover([str(folder)], labels="folder"), key=lambda r: r.path)
    if per_class:
        by: dict[str, list] = {}
        for r in records:
            by.setdefault(r.label, []).append(r)
        records = sorted((r for rs in by.values() for r in rs[:per_class]), key=lambda r: r.path)
    return records


def load_spaces(folder: Path, per_class: int | None, encoders: list[str]):
    """Row-aligned embeddings of each encoder (through the store) and integer labels."""
    from imgclust.pipeline.multi import embed_multi

    emb = embed_multi(_records(folder, per_class), encoders, device="cpu", progress=sys.stderr.isatty())
    classes = sorted({r.label for r in emb.records})
    y = np.asarray([classes.index(r.label) for r in emb.records], np.int64)
    edges = np.cumsum([0, *emb.spaces])
    return [emb.embeddings[:, a:b] for a, b in zip(edges[:-1], edges[1:])], y


def clustering_input(spaces: list[np.ndarray], n_components: int) -> tuple[np.ndarray, list[int] | None]:
    """What ``imgclust run --reduce pca --dims N`` clusters: each encoder's PCA, side by side."""
    from imgclust.analyze import reduce_spaces

    X0 = np.hstack(spaces) if len(spaces) > 1 else spaces[0]
    widths = [s.shape[1] for s in spaces] if len(spaces) > 1 else None
    reduce = "pca" if n_components else "none"
    X, reduced = reduce_spaces(X0, widths, reduce, n_components, 0)
    return np.ascontiguousarray(X, np.float32), reduced or [X.shape[1]]


def parse_method(spec: str) -> tuple[str, dict]:
    """``scan:n_heads=50:self_label=false`` -> ``("scan", {"n_heads": 50, "self_label": False})``."""
    import json

    name, *pairs = spec.split(":")
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return name, params


def _fit(method: str, X: np.ndarray, widths: list[int], k: int, seed: int):
    from imgclust.cluster import make_clusterer

    name, params = parse_method(method)
    if name == "kmeans":
        params.setdefault("n_init", 10)
    elif name == "turtle":
        params["spaces"] = widths
    est = make_clusterer(name, n_clusters=k, random_state=seed, **params)
    t = time.perf_counter()
    est.fit(X)
    return np.asarray(est.labels_), time.perf_counter() - t


def run_method(method, X, widths, y, seeds: int) -> dict:
    """Mean/std of ACC, NMI, ARI over seeds, seconds per seed, and the first seed's labels."""
    from imgclust.metrics import external_scores

    scores, secs, first = [], [], None
    for s in range(seeds):
        labels, sec = _fit(method, X, widths, len(np.unique(y)), s)
        first = labels if first is None else first
        scores.append(external_scores(y, labels))
        secs.append(sec)
        print(f"    {method:7s} seed {s}: acc {scores[-1]['acc']:.3f} ({sec:.1f} s)", flush=True)
    out = {m: float(np.mean([r[m] for r in scores])) for m in ("acc", "nmi", "ari")}
    out.update({f"{m}_std": float(np.std([r[m] for r in scores])) for m in ("acc", "nmi", "ari")})
    out["seconds_per_seed"] = float(np.mean(secs))
    return out | {"_labels": first}


def linear_probe(spaces, y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X = np.hstack(spaces)
    return float(cross_val_score(LogisticRegression(max_iter=500, C=1.0), X, y, cv=5).mean())


def label_free_pick(spaces0, results: dict) -> dict:
    """Silhouette of each method's clusters in a 2-D UMAP map of Lite0's vectors; the best is picked."""
    from sklearn.metrics import silhouette_score

    from imgclust.reduce import Reducer

    coords = Reducer("umap", n_components=2, random_state=0).fit_transform(spaces0[0])
    sil = {name: float(silhouette_score(coords, r["_labels"])) for name, r in results.items()
           if len(np.unique(r["_labels"])) > 1}
    picked = max(sil, key=sil.get)
    best = max(results, key=lambda n: results[n]["acc"])
    return {"silhouette_umap": sil, "picked": picked, "best_by_acc": best, "picked_is_best": picked == best,
            "picked_acc": results[picked]["acc"], "best_acc": results[best]["acc"]}


def space_choices(encoders: list[str], blocks: list[np.ndarray], which: str) -> list[tuple[str, list]]:
    """``(label, blocks)`` to cluster: ``first`` (the first encoder alone), ``each`` (every one alone), ``multi``."""
    want = {w.strip() for w in which.split(",") if w.strip()}
    if not want or want - {"first", "each", "multi"}:
        raise SystemExit(f"--spaces takes first, each and/or multi (got {which!r})")
    alone = [(e.removeprefix("efficientnet-"), [b]) for e, b in zip(encoders, blocks)]
    out = alone if "each" in want else alone[:1] if "first" in want else []
    return out + ([("multi", blocks)] if "multi" in want and len(blocks) > 1 else [])


def bench_set(name: str, folder: Path, per_class, encoders: list[str], methods: list[str], seeds: int,
              n_components: int = 128, which: str = "first,multi", probe: bool = True) -> dict:
    print(f"== {name}: embedding with {', '.join(encoders)}", flush=True)
    blocks, y = load_spaces(folder, per_class, encoders)
    out: dict = {"n": int(len(y)), "k": int(len(np.unique(y))), "encoders": encoders,
                 "n_components": n_components, "results": {}}
    for label, use in space_choices(encoders, blocks, which):
        X, widths = clustering_input(use, n_components)
        for m in methods:
            print(f"  {label}", flush=True)
            out["results"][f"{m}@{label}"] = run_method(m, X, widths, y, seeds)
        if probe:
            out[f"probe@{label}"] = linear_probe(use, y)
    out["selection"] = label_free_pick(blocks, out["results"])
    for r in out["results"].values():
        r.pop("_labels")
    return out


def to_markdown(res: dict) -> str:
    lines = [f"Load: {res['load']}. Seeds: {res['seeds']}. Lite0 = efficientnet-lite0; multi = "
             "the encoders listed, side by side (TURTLE: as separate spaces). Input: each encoder's "
             f"PCA-{res['args'].get('n_components', 0) or 'none'}, as `imgclust run --reduce pca`.", ""]
    for name, s in res["sets"].items():
        lines += [f"### {name} ({s['n']} images, k = {s['k']}; multi = {' + '.join(s['encoders'])})", "",
                  "| method | space | ACC | NMI | ARI | s/seed |", "|---|---|---|---|---|---|"]
        for key, r in s["results"].items():
            m, sp = key.split("@")
            lines.append(f"| {m} | {sp} | {r['acc']:.3f} ± {r['acc_std']:.3f} | {r['nmi']:.3f} ± {r['nmi_std']:.3f} "
                         f"| {r['ari']:.3f} ± {r['ari_std']:.3f} | {r['seconds_per_seed']:.1f} |")
        lines += [f"| linear probe (supervised) | {key.split('@')[1]} | {v:.3f} | | | |"
                  for key, v in s.items() if key.startswith("probe@")] + [""]
        sel = s["selection"]
        lines += [f"Label-free pick (best silhouette in Lite0's UMAP map): **{sel['picked']}** "
                  f"(ACC {sel['picked_acc']:.3f}); best by ACC: {sel['best_by_acc']} ({sel['best_acc']:.3f}).", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=1000, help="CIFAR-10 images per class (1000 = all).")
    ap.add_argument("--digits-per-class", type=int, default=0, help="digits per class (0 = all 1,797).")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--encoders", default=",".join(LITES))
    ap.add_argument("--methods", default="kmeans,scan,temi,turtle",
                    help="Comma-separated; parameters as name:key=value:... (scan:n_heads=50:self_label=false).")
    ap.add_argument("--no-probe", action="store_true", help="Skip the supervised linear probe.")
    ap.add_argument("--sets", default="cifar10,digits,emoji")
    ap.add_argument("--data", default="/tmp/imgclust-bench-data", help="Where generated sets are written.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-components", type=int, default=128,
                    help="PCA components per encoder (as imgclust run --reduce pca --dims); 0 = raw.")
    ap.add_argument("--spaces", default="first,multi",
                    help="Space choices: first (the first encoder alone), each (every encoder alone), multi (all).")
    ap.add_argument("--name", default="quality", help="Result file stem under benchmarks/results/.")
    args = ap.parse_args(argv)
    import torch

    from quality_data import digits_folder, emoji_folder

    torch.set_num_threads(args.threads)
    # BLAS/OpenMP (faiss k-means, numpy) too: on a busy 2-core box spin-waiting threads cost 10-40x.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)
    encoders, methods = args.encoders.split(","), args.methods.split(",")
    folders = {"cifar10": lambda: (CIFAR, args.per_class),
               "digits": lambda: (digits_folder(args.data, args.digits_per_class or None), None),
               "emoji": lambda: (emoji_folder(args.data), None)}
    res = {"load": f"loadavg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at start, torch threads "
                   f"{args.threads}", "seeds": args.seeds, "args": vars(args), "sets": {}}
    for name in args.sets.split(","):
        if name not in folders:
            raise SystemExit(f"unknown set {name!r}; valid: {', '.join(folders)}")
        folder, per = folders[name]()
        res["sets"][name] = bench_set(name, folder, per, encoders, methods, args.seeds,
                                     args.n_components, args.spaces,
                                     not args.no_probe)
    from quality_data import save_results

    save_results(RESULTS, args.name, res, to_markdown(res))
    return res


if __name__ == "__main__":
    main()
