"""The algorithms animated: k-means and k-medoids recorded iteration by iteration, and their inits.

* :func:`init_centers`: ``random``, ``k-means++`` / ``k-medoids++`` (D² sampling),
  ``maximin`` (furthest-first) or ``build`` (PAM's greedy BUILD).
* :func:`kmeans_history` (Lloyd) and :func:`kmedoids_history` (alternating / Voronoi iteration)
  return a :class:`History` of every iteration.
* :func:`compare_inits`: each initialisation with several seeds to convergence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ImgclustError

__all__ = ["History", "INITS", "init_centers", "kmeans_history", "kmedoids_history", "compare_inits"]

INITS = {"kmeans": ("random", "k-means++", "maximin"), "kmedoids": ("random", "k-medoids++", "build")}


@dataclass
class History:
    """Every iteration of one k-means / k-medoids run.

    Attributes:
        labels: Cluster of every point after each iteration's assignment step.
        centers: Centres after each iteration's update step (feature space).
        medoids: Medoid indices after each iteration (k-medoids only).
        inertia: Objective after each assignment (k-means: sum of squared distances; k-medoids:
            sum of distances).
        init: Indices of the initial centres (all initialisations pick data points).
        converged: Whether the assignment stopped changing before ``max_iter``.
    """

    method: str
    init_name: str
    labels: list[np.ndarray] = field(default_factory=list)
    centers: list[np.ndarray] = field(default_factory=list)
    medoids: list[np.ndarray] = field(default_factory=list)
    inertia: list[float] = field(default_factory=list)
    init: np.ndarray | None = None
    converged: bool = False

    @property
    def n_iter(self) -> int:
        """Number of recorded iterations."""
        return len(self.labels)

    @property
    def final_labels(self) -> np.ndarray:
        """Labels after the last iteration."""
        return self.labels[-1]


def _sqdist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared euclidean distances (N, K) without the (N, K, D) temporary."""
    d = (X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)[None]
    return np.maximum(d, 0)


def init_centers(X: np.ndarray, k: int, method: str, rng: np.random.Generator,
                 D: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``k`` initial centres chosen from the rows of ``X``.

    Args:
        X: (N, d) features.
        k: Number of centres.
        method: ``random``, ``k-means++`` / ``k-medoids++``, ``maximin`` or ``build``.
        rng: Random generator.
        D: Optional (N, N) distance matrix (k-medoids uses plain distances, k-means squared).
    """
    n = len(X)
    if method == "random":
        return rng.choice(n, k, replace=False)
    if method in ("k-means++", "k-medoids++", "maximin"):
        chosen = [int(rng.integers(n))]
        dmin = _sqdist(X, X[chosen]).ravel() if D is None else D[:, chosen[0]] ** 2
        for _ in range(1, k):
            if method == "maximin":
                nxt = int(dmin.argmax())
            else:
                p = dmin / dmin.sum() if dmin.sum() > 0 else np.full(n, 1 / n)
                nxt = int(rng.choice(n, p=p))
            chosen.append(nxt)
            dn = _sqdist(X, X[[nxt]]).ravel() if D is None else D[:, nxt] ** 2
            dmin = np.minimum(dmin, dn)
        return np.asarray(chosen)
    if method == "build":
        if D is None:
            D = np.sqrt(_sqdist(X, X))
        chosen = [int(D.sum(1).argmin())]
        cur = D[:, chosen[0]].copy()
        for _ in range(1, k):
            gain = np.maximum(cur[:, None] - D, 0).sum(0)  # cost reduction if each point became a medoid
            gain[chosen] = -1
            nxt = int(gain.argmax())
            chosen.append(nxt)
            cur = np.minimum(cur, D[:, nxt])
        return np.asarray(chosen)
    raise ImgclustError(f"unknown initialisation {method!r}; valid: random, k-means++, maximin, k-medoids++, build")


def kmeans_history(X: np.ndarray, k: int, init: str = "k-means++", max_iter: int = 30, random_state: int = 0
                   ) -> History:
    """Lloyd's k-means, recording every iteration; stops when no point changes cluster."""
    X = np.asarray(X, np.float64)
    rng = np.random.default_rng(random_state)
    h = History("kmeans", init)
    h.init = init_centers(X, k, init, rng)
    C = X[h.init].copy()
    prev = None
    for _ in range(max_iter):
        d = _sqdist(X, C)
        lab = d.argmin(1)
        h.inertia.append(float(d[np.arange(len(X)), lab].sum()))
        newC = C.copy()
        for c in range(k):
            m = lab == c
            if m.any():
                newC[c] = X[m].mean(0)
            else:  # an empty cluster restarts at the point worst served (standard fix)
                far = int(d[np.arange(len(X)), lab].argmax())
                newC[c] = X[far]
        h.labels.append(lab)
        h.centers.append(newC)
        C = newC
        if prev is not None and np.array_equal(prev, lab):
            h.converged = True
            break
        prev = lab
    return h


def kmedoids_history(X: np.ndarray, k: int, init: str = "k-medoids++", max_iter: int = 30, random_state: int = 0,
                     D: np.ndarray | None = None) -> History:
    """Alternating ("Voronoi iteration") k-medoids, recording every iteration.

    Each iteration assigns every point to its nearest medoid, then moves each medoid to the member
    with the smallest total distance to the others; stops when the medoids no longer move.
    """
    X = np.asarray(X, np.float64)
    rng = np.random.default_rng(random_state)
    if D is None:
        D = np.sqrt(_sqdist(X, X))
    h = History("kmedoids", init)
    h.init = init_centers(X, k, init, rng, D=D)
    med = np.asarray(h.init).copy()
    for _ in range(max_iter):
        dm = D[:, med]
        lab = dm.argmin(1)
        h.inertia.append(float(dm[np.arange(len(X)), lab].sum()))
        new = med.copy()
        for c in range(k):
            members = np.flatnonzero(lab == c)
            if len(members):
                new[c] = members[D[np.ix_(members, members)].sum(1).argmin()]
        h.labels.append(lab)
        h.medoids.append(new)
        h.centers.append(X[new])
        if np.array_equal(new, med):
            h.converged = True
            break
        med = new
    return h


def compare_inits(X: np.ndarray, k: int, method: str = "kmeans", inits: Sequence[str] | None = None,
                  seeds: int = 5, max_iter: int = 100, labels_true: Sequence | None = None,
                  random_state: int = 0, D: np.ndarray | None = None) -> dict:
    """Run each initialisation with several seeds to convergence; final inertia, scores, iterations.

    Returns:
        ``{init: {"inertia": [...], "silhouette": [...], "n_iter": [...], "nmi"/"acc": [...],
        "curve": inertia per iteration of the first seed}}``.
    """
    from sklearn.metrics import silhouette_score

    from ..metrics import external_scores

    inits = list(inits or INITS[method])
    run = kmeans_history if method == "kmeans" else kmedoids_history
    out: dict[str, dict] = {}
    for name in inits:
        rec: dict[str, list] = {"inertia": [], "silhouette": [], "n_iter": []}
        for s in range(seeds):
            kw = {"D": D} if method == "kmedoids" else {}
            h = run(X, k, init=name, max_iter=max_iter, random_state=random_state + s, **kw)
            lab = h.final_labels
            rec["inertia"].append(h.inertia[-1])
            rec["n_iter"].append(h.n_iter)
            ok = len(set(lab.tolist())) > 1
            rec["silhouette"].append(float(silhouette_score(X, lab, sample_size=min(len(X), 2000),
                                                            random_state=0)) if ok else None)
            if labels_true is not None:
                known = np.asarray([v is not None for v in labels_true])
                ext = external_scores(np.asarray([str(v) for v in labels_true], object)[known].astype(str),
                                      lab[known])
                rec.setdefault("nmi", []).append(ext.get("nmi"))
                rec.setdefault("acc", []).append(ext.get("acc"))
            if s == 0:
                rec["curve"] = h.inertia
        out[name] = rec
    return out
