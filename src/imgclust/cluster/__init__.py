"""Clusterers behind one registry. Every one follows the scikit-learn estimator contract:
``__init__`` stores arguments, ``fit(X)`` returns ``self`` and sets ``labels_`` (-1 = noise);
``predict(X)`` assigns new points where the method allows it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ImgclustError
from .classic import KMeans, KMedoids, HDBSCAN, Agglomerative, Spectral, KSweep, sweep_k

__all__ = ["CLUSTERERS", "make_clusterer", "KMeans", "KMedoids", "HDBSCAN", "Agglomerative", "Spectral",
           "KSweep", "sweep_k", "SCAN", "TEMI", "needs_k"]

# name -> "module:Class"; classes are imported when used.
CLUSTERERS: dict[str, str] = {
    "kmeans": "imgclust.cluster.classic:KMeans",
    "kmedoids": "imgclust.cluster.classic:KMedoids",
    "hdbscan": "imgclust.cluster.classic:HDBSCAN",
    "agglomerative": "imgclust.cluster.classic:Agglomerative",
    "spectral": "imgclust.cluster.classic:Spectral",
    "scan": "imgclust.cluster.heads:SCAN",
    "temi": "imgclust.cluster.heads:TEMI",
}


def _resolve(name: str):
    if name not in CLUSTERERS:
        raise ImgclustError(f"unknown method {name!r}; valid methods: {', '.join(CLUSTERERS)}")
    module, attr = CLUSTERERS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def needs_k(method: Any) -> bool:
    """Whether a method takes a number of clusters (HDBSCAN finds its own)."""
    cls = _resolve(method) if isinstance(method, str) else type(method)
    return getattr(cls, "needs_k", True)


def make_clusterer(method: str | Any, n_clusters: int | None = None, random_state: int = 0,
                   progress: bool | None = None, **params):
    """Resolve a name to a fresh estimator, or return a given estimator unchanged.

    ``progress`` is passed only to estimators that take it (the trained heads); unknown extra
    parameters raise a clear error naming the valid ones.
    """
    import inspect

    from ..errors import ImgclustError

    if not isinstance(method, str):
        return method
    cls = _resolve(method)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    if getattr(cls, "needs_k", True):
        params["n_clusters"] = n_clusters
    if progress is not None and "progress" in accepted:
        params["progress"] = progress
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ImgclustError(f"method {method!r} does not take {', '.join(unknown)}; "
                            f"it takes: {', '.join(sorted(accepted - {'random_state'}))}")
    return cls(random_state=random_state, **params)


def __getattr__(name: str):
    if name in ("SCAN", "TEMI"):
        return getattr(importlib.import_module("imgclust.cluster.heads"), name)
    raise AttributeError(name)
