"""imgclust: cluster image collections with pretrained vision encoders, score and show the clusters."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["cluster_images", "cluster_embeddings", "embed_images", "recluster", "load_run", "ClusteringResult",
           "ImgclustError", "__version__"]

from .errors import ImgclustError


def __getattr__(name: str):
    # The API pulls in numpy/sklearn/faiss; import it on first use so `import imgclust` stays light.
    if name in ("cluster_images", "cluster_embeddings", "embed_images", "recluster", "load_run", "ClusteringResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgclust' has no attribute {name!r}")
