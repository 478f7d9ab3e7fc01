"""Label-free criteria for choosing k that need more than one fit per k: stability and the gap statistic.

- **Stability** (Lange, Roth, Braun & Buhmann, *Stability-based validation of clustering
  solutions*, Neural Computation 2004): split the data into two random halves, cluster each,
  carry the first half's solution to the second by nearest centre, and count the fraction of
  points whose two labels disagree under the best matching of cluster ids (Hungarian). That
  instability grows with k even for structureless data, so it is divided by the instability of
  random labellings with the same cluster sizes. Repeated over ``n_splits`` random splits. Any
  k at or below the true one can be perfectly stable (well separated groups merge the same way in
  every split), so, as Ben-Hur, Elisseeff & Guyon (PSB 2002) read their stability curves, the
  *largest* k whose instability is within one standard error (+0.01) of the lowest is picked.
- **Gap statistic** (Tibshirani, Walther & Hastie, JRSS-B 2001): ``Gap(k) = E*[log W_k] - log W_k``,
  ``W_k`` the within-cluster sum of squares, ``E*`` over ``n_refs`` uniform reference sets in the
  box of the data's principal axes; the smallest k with ``Gap(k) >= Gap(k+1) - s_{k+1}`` is picked.
"""

from __future__ import annotations

import numpy as np

from .registry import make_clusterer

__all__ = ["stability_scores", "pick_stability", "gap_scores", "pick_gap", "mismatch"]


def mismatch(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of points whose labels in ``a`` and ``b`` disagree under the best one-to-one id matching."""
    from scipy.optimize import linear_sum_assignment

    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), np.int64)
    np.add.at(table, (ai, bi), 1)
    r, c = linear_sum_assignment(-table)
    return 1.0 - table[r, c].sum() / len(a)


def _centers(X: np.ndarray, labels: np.ndarray, model) -> np.ndarray:
    given = getattr(model, "cluster_centers_", None)
    if given is not None:
        return np.asarray(given, np.float32)
    return np.stack([X[labels == c].mean(0) for c in np.unique(labels[labels >= 0])]).astype(np.float32)


def _nearest_center(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    c2 = (centers ** 2).sum(1)
    return np.concatenate([(c2[None] - 2 * X[s:s + 4096] @ centers.T).argmin(1) for s in range(0, len(X), 4096)])


def stability_scores(X: np.ndarray, ks, method="kmeans", n_splits: int = 5, n_random: int = 20,
                     random_state: int = 0, progress=None, **params) -> tuple[list[float], list[float]]:
    """``(instability, se)`` per k: normalised instability of ``method`` (lower = more stable), its standard error.

    Args:
        X: (N, D) data.
        ks: The k values to score.
        method: Clusterer name (its centres, or member means, carry labels across halves).
        n_splits: Random half splits per k.
        n_random: Label permutations per split for the random-labelling baseline.
        random_state: Seed (splits and fits).
        progress: Called once per k.
    """
    X = np.asarray(X, np.float32)
    rng = np.random.default_rng(random_state)
    splits = [rng.permutation(len(X)) for _ in range(n_splits)]
    out, se = [], []
    for k in ks:
        d, d_rand = [], []
        for s, perm in enumerate(splits):
            a, b = np.sort(perm[: len(X) // 2]), np.sort(perm[len(X) // 2:])
            ma = make_clusterer(method, n_clusters=k, random_state=random_state + s, **params).fit(X[a])
            mb = make_clusterer(method, n_clusters=k, random_state=random_state + s, **params).fit(X[b])
            carried = _nearest_center(X[b], _centers(X[a], np.asarray(ma.labels_), ma))
            own = np.asarray(mb.labels_)
            d.append(mismatch(carried, own))
            d_rand += [mismatch(rng.permutation(carried), own) for _ in range(n_random)]
        norm = np.asarray(d) / max(np.mean(d_rand), 1e-12)
        out.append(float(norm.mean()))
        se.append(float(norm.std() / np.sqrt(len(norm))))
        if progress is not None:
            progress()
    return out, se


def pick_stability(ks, instability, se, tol: float = 0.01) -> int:
    """The largest k whose instability is within ``se`` of the lowest (+``tol``); see the module docstring."""
    i = int(np.argmin(instability))
    bound = instability[i] + se[i] + tol
    return int(max(k for k, v in zip(ks, instability) if v <= bound))


def _log_w(X: np.ndarray, k: int, method, random_state: int, params: dict) -> float:
    model = make_clusterer(method, n_clusters=k, random_state=random_state, **params).fit(X)
    labels = np.asarray(model.labels_)
    w = getattr(model, "inertia_", None)
    if w is None:
        w = sum(((X[labels == c] - X[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels))
    return float(np.log(max(float(w), 1e-12)))


def gap_scores(X: np.ndarray, ks, method="kmeans", n_refs: int = 5, random_state: int = 0,
               progress=None, **params) -> tuple[list[float], list[float]]:
    """``(gap, s)`` per k: the gap statistic and its standard error ``sd * sqrt(1 + 1/n_refs)``."""
    X = np.asarray(X, np.float64)
    centred = X - X.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    rotated = centred @ vt.T  # uniform references in the box of the principal axes (Tibshirani's "b")
    lo, hi = rotated.min(0), rotated.max(0)
    rng = np.random.default_rng(random_state)
    refs = [(rng.uniform(lo, hi, size=rotated.shape) @ vt).astype(np.float32) for _ in range(n_refs)]
    Xf = X.astype(np.float32)
    gap, se = [], []
    for k in ks:
        ref = np.array([_log_w(R, k, method, random_state, params) for R in refs])
        gap.append(float(ref.mean() - _log_w(Xf, k, method, random_state, params)))
        se.append(float(ref.std() * np.sqrt(1 + 1 / n_refs)))
        if progress is not None:
            progress()
    return gap, se


def pick_gap(ks, gap, se) -> int:
    """Tibshirani's rule: the smallest k with ``Gap(k) >= Gap(k+1) - s(k+1)``; else the k of the largest gap."""
    for i in range(len(ks) - 1):
        if gap[i] >= gap[i + 1] - se[i + 1]:
            return int(ks[i])
    return int(ks[int(np.argmax(gap))])
