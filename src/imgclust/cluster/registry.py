"""Clusterer names -> classes, imported lazily when a name is used."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import ImgclustError

__all__ = ["CLUSTERERS", "make_clusterer", "needs_k", "takes_param"]

# name -> "module:Class"; classes are imported when used.
CLUSTERERS: dict[str, str] = {
    "kmeans": "imgclust.cluster.classic:KMeans",
    "kmedoids": "imgclust.cluster.classic:KMedoids",
    "hdbscan": "imgclust.cluster.classic:HDBSCAN",
    "agglomerative": "imgclust.cluster.classic:Agglomerative",
    "spectral": "imgclust.cluster.classic:Spectral",
    "scan": "imgclust.cluster.heads:SCAN",
    "temi": "imgclust.cluster.heads:TEMI",
    "turtle": "imgclust.cluster.heads:TURTLE",
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


def takes_param(method: str, name: str) -> bool:
    """Whether the named method's estimator takes the constructor argument ``name`` (e.g. ``spaces``)."""
    return name in inspect.signature(_resolve(method).__init__).parameters


def make_clusterer(method: str | Any, n_clusters: int | None = None, random_state: int = 0,
                   progress: bool | None = None, **params):
    """Resolve a name to a fresh estimator, or return a given estimator unchanged.

    ``progress`` is passed only to estimators that take it (the trained heads); unknown extra
    parameters raise a clear error naming the valid ones.
    """
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
