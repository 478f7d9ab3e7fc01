"""Label-free choice of k: how often does each criterion pick the true k, or the k with the best ACC?

For each set (CIFAR-10 at 1,000 and 10,000 images, scikit-learn's digits, the emoji drawings; see
``quality.py`` / ``quality_data.py``) the Lite0 vectors (through the shared store) are reduced like
``imgclust run`` does by default (PCA to 50 dimensions) and k-means (10 restarts, seed 0) is fitted
for every k in ``--ks``. Each criterion of :func:`imgclust.cluster.sweep_k` picks a k without labels:

- ``silhouette`` (today's ``--k auto``), ``davies_bouldin``, ``calinski_harabasz``: on the PCA input;
- ``stability``: normalised instability over 5 random half splits (Lange et al. 2004), largest
  k within one standard error of the most stable;
- ``gap``: Tibshirani's gap statistic, 5 uniform references;
- ``silhouette_umap``: the silhouette of the same k-means labels measured in a 2-D UMAP map of the
  input (the map the report draws), highest picked.

Recorded per set and criterion: the picked k, ACC/NMI at that k, at the true k and at the k with the
best ACC. Usage::

    .venv/bin/python benchmarks/select_k.py --ks 5-20

Writes ``benchmarks/results/select_k.json`` and ``select_k.md``. This is a script, not a test.
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
RESULTS = ROOT / "benchmarks" / "results"
CRITERIA = ["silhouette", "davies_bouldin", "calinski_harabasz", "stability", "gap", "silhouette_umap"]


def _set_folders(data: str) -> dict:
    from quality import CIFAR
    from quality_data import digits_folder, emoji_folder

    return {"cifar10-1k": lambda: (CIFAR, 100), "cifar10-10k": lambda: (CIFAR, 1000),
            "digits": lambda: (digits_folder(data), None), "emoji": lambda: (emoji_folder(data), None)}


def criteria_picks(X: np.ndarray, ks: list[int], seed: int = 0) -> tuple[dict, dict, dict]:
    """``(picks, scores, labels)``: the k each criterion picks, its score per k, k-means labels per k."""
    from sklearn.metrics import silhouette_score

    from imgclust.cluster import sweep_k
    from imgclust.cluster.selection import gap_scores, pick_gap
    from imgclust.cluster.sweep import pick_k
    from imgclust.reduce import Reducer

    t = time.perf_counter()
    sw = sweep_k(X, "kmeans", ks=ks, random_state=seed, criterion="stability", keep_labels=True)
    secs = {"sweep+stability": time.perf_counter() - t}
    picks = {"stability": sw.best_k}
    scores = dict(sw.scores)
    for c in ("silhouette", "davies_bouldin", "calinski_harabasz"):
        picks[c] = pick_k(ks, scores, c)
    t = time.perf_counter()
    scores["gap"], scores["gap_se"] = gap_scores(X, ks, "kmeans", random_state=seed)
    picks["gap"] = pick_gap(ks, scores["gap"], scores["gap_se"])
    secs["gap"] = time.perf_counter() - t
    t = time.perf_counter()
    coords = Reducer("umap", n_components=2, random_state=seed).fit_transform(X)
    sample = np.random.default_rng(seed).choice(len(X), min(len(X), 3000), replace=False)
    scores["silhouette_umap"] = [float(silhouette_score(coords[sample], sw.extra["labels"][k][sample])) for k in ks]
    picks["silhouette_umap"] = int(ks[int(np.argmax(scores["silhouette_umap"]))])
    secs["silhouette_umap"] = time.perf_counter() - t
    return picks, scores | {"seconds": secs}, sw.extra["labels"]


def bench_set(name: str, folder: Path, per_class, ks: list[int], encoder: str, dims: int) -> dict:
    from imgclust.metrics import external_scores
    from imgclust.reduce import Reducer
    from quality import load_spaces

    print(f"== {name}", flush=True)
    spaces, y = load_spaces(folder, per_class, [encoder])
    X = Reducer("pca", n_components=dims, random_state=0).fit_transform(spaces[0]).astype(np.float32)
    picks, scores, labels = criteria_picks(X, ks)
    ext = {k: external_scores(y, labels[k]) for k in ks}
    true_k = int(len(np.unique(y)))
    best_k = max(ks, key=lambda k: ext[k]["acc"])
    out = {"n": int(len(y)), "true_k": true_k, "best_k_by_acc": best_k, "ks": ks,
           "acc": [ext[k]["acc"] for k in ks], "nmi": [ext[k]["nmi"] for k in ks],
           "acc_at_true_k": ext[true_k]["acc"] if true_k in ext else None,
           "nmi_at_true_k": ext[true_k]["nmi"] if true_k in ext else None,
           "acc_at_best_k": ext[best_k]["acc"], "scores": scores, "picks": {}}
    for c in CRITERIA:
        k = picks[c]
        out["picks"][c] = {"k": k, "acc": ext[k]["acc"], "nmi": ext[k]["nmi"], "is_true_k": k == true_k,
                           "is_best_k": k == best_k}
        print(f"  {c:18s} k={k:3d} acc {ext[k]['acc']:.3f} nmi {ext[k]['nmi']:.3f}", flush=True)
    return out


def to_markdown(res: dict) -> str:
    sets = res["sets"]
    head = "| criterion | " + " | ".join(f"{n} (true k {s['true_k']})" for n, s in sets.items()) + \
           " | true k picked | best-ACC k picked |"
    lines = [f"Load: {res['load']}. k-means on Lite0 -> PCA-{res['args']['dims']}, k swept over "
             f"{res['args']['ks']}; cell = picked k, ACC / NMI at it.", "", head,
             "|---" * (len(sets) + 3) + "|"]
    for c in CRITERIA:
        cells = [f"{p['k']}: {p['acc']:.3f} / {p['nmi']:.3f}" for p in (s["picks"][c] for s in sets.values())]
        hits = sum(s["picks"][c]["is_true_k"] for s in sets.values())
        best = sum(s["picks"][c]["is_best_k"] for s in sets.values())
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {hits}/{len(sets)} | {best}/{len(sets)} |")
    lines.append("| *(true k)* | " + " | ".join(
        f"{s['true_k']}: {s['acc_at_true_k']:.3f} / {s['nmi_at_true_k']:.3f}" for s in sets.values()) + " | | |")
    lines.append("| *(best k by ACC, oracle)* | " + " | ".join(
        f"{s['best_k_by_acc']}: {s['acc_at_best_k']:.3f}" for s in sets.values()) + " | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="cifar10-1k,cifar10-10k,digits,emoji")
    ap.add_argument("--ks", default="5-20", help="k range, lo-hi inclusive.")
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--dims", type=int, default=50, help="PCA dimensions (imgclust run's default).")
    ap.add_argument("--data", default="/tmp/imgclust-bench-data", help="Where generated sets are written.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="select_k")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)
    lo, hi = (int(v) for v in args.ks.split("-"))
    folders = _set_folders(args.data)
    res = {"load": f"loadavg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at start", "args": vars(args),
           "sets": {}}
    for name in args.sets.split(","):
        if name not in folders:
            raise SystemExit(f"unknown set {name!r}; valid: {', '.join(folders)}")
        folder, per = folders[name]()
        res["sets"][name] = bench_set(name, folder, per, list(range(lo, hi + 1)), args.encoder, args.dims)
    res["load_end"] = f"loadavg {os.getloadavg()[0]:.1f} at the end"
    from quality_data import save_results

    save_results(RESULTS, args.name, res, to_markdown(res))
    return res


if __name__ == "__main__":
    main()
