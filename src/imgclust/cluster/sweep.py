"""Choosing k: fit a method for each k, record inertia (elbow) and internal scores, pick k by a criterion.

Criteria (``criterion=``): ``silhouette`` (the default: highest), ``davies_bouldin`` (lowest),
``calinski_harabasz`` (highest), ``stability`` (the largest k about as stable as the most stable one
over random half splits, Lange et al. 2004) and ``gap`` (Tibshirani et al. 2001); the last two refit per k
(:mod:`imgclust.cluster.selection`). Silhouette, Davies-Bouldin and Calinski-Harabasz are recorded
for every sweep whichever picks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ImgclustError
from ..metrics import internal_scores
from .registry import make_clusterer
from .selection import gap_scores, pick_gap, pick_stability, stability_scores

__all__ = ["KSweep", "sweep_k", "default_k_range", "K_CRITERIA", "pick_k", "check_criterion"]

# criterion -> True when a higher score is better
K_CRITERIA = {"silhouette": True, "davies_bouldin": False, "calinski_harabasz": True, "stability": False,
              "gap": True}


@dataclass
class KSweep:
    """Result of sweeping k: inertia (elbow), silhouette and the other scores per k, and the chosen k."""

    ks: list[int]
    inertia: list[float | None]
    silhouette: list[float | None]
    best_k: int
    criterion: str = "silhouette"
    extra: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON-able form written to metrics.json and run.json."""
        return {"ks": self.ks, "inertia": self.inertia, "silhouette": self.silhouette,
                "best_k": self.best_k, "criterion": self.criterion, "scores": self.scores}


def default_k_range(n: int) -> list[int]:
    """2..min(30, sqrt(2N)): a sensible sweep for image collections."""
    hi = int(min(30, max(3, np.sqrt(2 * n)), n - 1))
    return list(range(2, max(3, hi + 1)))


def check_criterion(criterion: str) -> str:
    """``criterion`` if it is one of :data:`K_CRITERIA`, else a one-line error listing them."""
    if criterion not in K_CRITERIA:
        raise ImgclustError(f"unknown --k-criterion {criterion!r}; valid: {', '.join(K_CRITERIA)}")
    return criterion


def pick_k(ks: list[int], scores: dict, criterion: str) -> int:
    """The k that ``criterion`` picks from the per-k ``scores`` of a sweep (gap and stability by their rules)."""
    if criterion == "gap":
        return pick_gap(ks, scores["gap"], scores["gap_se"])
    if criterion == "stability":
        return pick_stability(ks, scores["stability"], scores["stability_se"])
    higher = K_CRITERIA[criterion]
    scored = [((s if higher else -s), -k) for s, k in zip(scores[criterion], ks) if s is not None]
    return -max(scored)[1] if scored else ks[0]  # ties: the smaller k


def sweep_k(X: np.ndarray, method="kmeans", ks: list[int] | None = None, random_state: int = 0,
            progress=None, criterion: str = "silhouette", keep_labels: bool = False, **params) -> KSweep:
    """Fit ``method`` for each k, record inertia and internal scores, pick k by ``criterion``.

    Args:
        X: (N, D) clustering input.
        method: Clusterer name.
        ks: k values (default :func:`default_k_range`).
        random_state: Seed.
        progress: Called once per fit of the sweep.
        criterion: One of :data:`K_CRITERIA`.
        keep_labels: Keep each k's labels in ``extra["labels"]`` (for benchmarks).
        params: Extra clusterer arguments.
    """
    check_criterion(criterion)
    X = np.asarray(X, np.float32)
    if len(X) < 3:
        raise ImgclustError(f"--k auto needs at least 3 images (got {len(X)})")
    ks = [k for k in (ks or default_k_range(len(X))) if 2 <= k < len(X)]
    if not ks:
        raise ImgclustError(f"no k to sweep between 2 and {len(X) - 1}")
    inertia, scores, labels = [], {"silhouette": [], "davies_bouldin": [], "calinski_harabasz": []}, {}
    for k in ks:
        model = make_clusterer(method, n_clusters=k, random_state=random_state, **params).fit(X)
        inertia.append(getattr(model, "inertia_", None))
        for name, v in internal_scores(X, model.labels_, sample_size=3000, random_state=random_state).items():
            scores[name].append(v)
        if keep_labels:
            labels[k] = np.asarray(model.labels_)
        if progress is not None:
            progress()
    if criterion == "stability":
        scores["stability"], scores["stability_se"] = stability_scores(X, ks, method, random_state=random_state,
                                                                       **params)
    elif criterion == "gap":
        scores["gap"], scores["gap_se"] = gap_scores(X, ks, method, random_state=random_state, **params)
    return KSweep(ks=ks, inertia=inertia, silhouette=scores["silhouette"], best_k=pick_k(ks, scores, criterion),
                  criterion=criterion, scores=scores, extra={"labels": labels} if keep_labels else {})
