"""Shared machinery of the clustering heads (SCAN, TEMI) trained on frozen embeddings.

One import point for the head estimators; each part lives in its own module:

* :mod:`._inputs`: validation and L2-normalisation (:func:`as_features`, :func:`as_views`,
  :func:`check_k`) and the :class:`InputScaler`.
* :mod:`._neighbors`: neighbour mining (exact cosine kNN with faiss) and sampling.
* :mod:`._modules`: :class:`MultiHead` (``H`` heads in one batched module), fast softmax,
  batched evaluation and Hungarian head alignment for ensembling.
* :mod:`._training`: seeded generators, minibatches, the embedding-space :class:`Augmenter`,
  :class:`EarlyStopping` and the :class:`TrainProgress` bar.
* :mod:`._base`: :class:`HeadClusterer`, the scikit-learn estimator base.

Everything random draws from a generator seeded with ``random_state`` (never global seeds),
on the CPU, so a seed gives the same result on every run.
"""

from __future__ import annotations

from ._base import HeadClusterer
from ._inputs import InputScaler, as_features, as_views, check_k, resolve_torch_device
from ._modules import MultiHead, align_heads, head_outputs, log_softmax, softmax
from ._neighbors import effective_neighbors, mine_neighbors, sample_neighbors
from ._training import Augmenter, EarlyStopping, TrainProgress, make_generator, minibatches, n_batches

__all__ = [
    "MultiHead", "InputScaler", "Augmenter", "EarlyStopping", "TrainProgress", "HeadClusterer",
    "as_features", "as_views", "mine_neighbors", "effective_neighbors", "minibatches", "make_generator", "align_heads",
    "check_k", "resolve_torch_device", "log_softmax", "softmax", "head_outputs", "n_batches", "sample_neighbors",
]
