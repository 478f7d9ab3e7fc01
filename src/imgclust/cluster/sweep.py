"""Choosing k: fit a method for each k, record inertia (elbow) and silhouette, pick by silhouette."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ImgclustError
from ..metrics import internal_scores
from .registry import make_clusterer

__all__ = ["KSweep", "sweep_k", "default_k_range"]


@dataclass
class KSweep:
    """Result of sweeping k: inertia (elbow) and silhouette per k, and the chosen k."""

    ks: list[int]
    inertia: list[float | None]
    silhouette: list[float | None]
    best_k: int
    criterion: str = "silhouette"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON-able form written to metrics.json and run.json."""
        return {"ks": self.ks, "inertia": self.inertia, "silhouette": self.silhouette,
                "best_k": self.best_k, "criterion": self.criterion}


def default_k_range(n: int) -> list[int]:
    """2..min(30, sqrt(2N)): a sensible sweep for image collections."""
    hi = int(min(30, max(3, np.sqrt(2 * n)), n - 1))
    return list(range(2, max(3, hi + 1)))


def sweep_k(X: np.ndarray, method="kmeans", ks: list[int] | None = None, random_state: int = 0,
            progress=None, **params) -> KSweep:
    """Fit ``method`` for each k, record inertia and silhouette, pick k by silhouette."""
    X = np.asarray(X, np.float32)
    if len(X) < 3:
        raise ImgclustError(f"--k auto needs at least 3 images (got {len(X)})")
    ks = [k for k in (ks or default_k_range(len(X))) if 2 <= k < len(X)]
    inertia, sil = [], []
    for k in ks:
        model = make_clusterer(method, n_clusters=k, random_state=random_state, **params).fit(X)
        inertia.append(getattr(model, "inertia_", None))
        sil.append(internal_scores(X, model.labels_, sample_size=3000, random_state=random_state)["silhouette"])
        if progress is not None:
            progress()
    scored = [(s, k) for s, k in zip(sil, ks) if s is not None]
    best = max(scored)[1] if scored else ks[0]
    return KSweep(ks=ks, inertia=inertia, silhouette=sil, best_k=best)
