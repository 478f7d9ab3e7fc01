"""Clusterers behind one registry.

Every one follows the scikit-learn estimator contract:
``__init__`` stores arguments, ``fit(X)`` returns ``self`` and sets ``labels_`` (-1 = noise);
``predict(X)`` assigns new points where the method allows it.
"""

from __future__ import annotations

import importlib

from .classic import HDBSCAN, Agglomerative, KMeans, KMedoids, Spectral
from .registry import CLUSTERERS, make_clusterer, needs_k
from .sweep import K_CRITERIA, KSweep, default_k_range, sweep_k

__all__ = ["CLUSTERERS", "make_clusterer", "KMeans", "KMedoids", "HDBSCAN", "Agglomerative", "Spectral",
           "KSweep", "sweep_k", "default_k_range", "K_CRITERIA", "SCAN", "TEMI", "TURTLE", "needs_k"]


def __getattr__(name: str):
    if name in ("SCAN", "TEMI", "TURTLE"):
        return getattr(importlib.import_module("imgclust.cluster.heads"), name)
    raise AttributeError(name)
