"""imgclust: cluster image collections with pretrained vision encoders, score and show the clusters.

Every command of the ``imgclust`` CLI has a Python twin reachable from here (imported on first
use, so ``import imgclust`` stays light):

=====================  =============================================
CLI                    Python
=====================  =============================================
``run``                :func:`cluster_images`
``embed``              :func:`embed_images`
``cluster --from``     :func:`recluster`
``report``             :func:`build_report`
``encoders``           :func:`list_encoders`
``demo``               :func:`run_demo`
``neighbors``          :func:`neighbors` (+ :func:`cluster_candidates`, ``--sweep``: :func:`sweep_candidates`)
``assign``             :func:`assign`
``animate``            :func:`animate_run`
``explain``            :func:`explain_run`
``probe``              :func:`probe_run`
``name``               :func:`name_clusters`
``search``             :func:`search_run`
``finetune``           :func:`finetune_clip`
``compare``            :func:`compare_encoders`
``robustness``         :func:`robustness`
``datasets prepare``   :func:`prepare_dataset`
``duplicates``         :func:`find_duplicates`
``outliers``           :func:`find_outliers`
=====================  =============================================
"""

from __future__ import annotations

from .errors import ImgclustError

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "cluster_images": "api", "recluster": "api", "run_demo": "api",
    "embed_images": "pipeline.embed", "cluster_embeddings": "analyze",
    "ClusteringResult": "rundir", "load_run": "rundir",
    "build_report": "report", "list_encoders": "encoders", "create_encoder": "encoders",
    "neighbors": "explore.neighbors", "cluster_candidates": "explore.neighbors",
    "sweep_candidates": "explore.candidates", "assign": "explore.assign",
    "animate_run": "explore.animate", "explain_run": "explore.explain", "probe_run": "explore.probe",
    "name_clusters": "language.naming", "search_run": "language.search", "finetune_clip": "language.finetune",
    "compare_encoders": "language.compare",
    "robustness": "explore.robustness", "prepare_dataset": "datasets.prepare",
    "find_duplicates": "explore.curate", "find_outliers": "explore.curate",
}

__all__ = sorted(_LAZY) + ["ImgclustError", "__version__"]


def __getattr__(name: str):
    # The API pulls in numpy/sklearn/faiss/torch; import a name's module on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'imgclust' has no attribute {name!r}")
