"""The heads' inputs read on demand: rows of a (memory-mapped) array, normalised and scaled per batch.

SCAN and TEMI used to copy all N x D inputs into memory three times (normalised, scaled, and
again inside the kNN). :class:`ScaledRows` keeps only the source (an array, a memory map or the
store's lazy :class:`~imgclust._rows.ShardRows`) and the scaler; each minibatch gathers its
rows (and their mined neighbours) and normalises and scales just those. Row by row the values
are bit-identical to the in-memory computation, so a seed gives the same result on an array
and on a memory map. Memory is then the neighbour index (and the faiss index while mining)
plus one batch.
"""

from __future__ import annotations

import numpy as np
import torch

from ...limits import ASSIGN_BATCH
from ._inputs import InputScaler

__all__ = ["READ_BATCH", "ScaledRows", "normalise_rows", "fit_scaler"]

# Rows per read when a pass goes over every input row (scaler fit, neighbour index, predictions).
READ_BATCH = ASSIGN_BATCH


def normalise_rows(X: np.ndarray) -> np.ndarray:
    """L2-normalised float32 rows (as :func:`~._inputs.as_features`, without the checks)."""
    X = np.asarray(X, dtype=np.float32)
    return np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12))


def fit_scaler(X) -> InputScaler:
    """:meth:`InputScaler.fit` on the normalised rows of ``X``, streamed, with bit-identical results.

    The mean is one sequential float32 reduction over all rows (what ``mean(0)`` does) and the
    variance keeps every row's squared norm, so nothing N x D is held.
    """
    n, d = len(X), X.shape[1]
    total = np.zeros(d, np.float32)
    for s in range(0, n, READ_BATCH):
        total = np.add.reduce(np.concatenate([total[None], normalise_rows(X[s:s + READ_BATCH])]), axis=0)
    scaler = InputScaler()
    scaler.mean_ = (total / n).astype(np.float32)
    sq = np.empty(n, np.float32)
    for s in range(0, n, READ_BATCH):
        sq[s:s + READ_BATCH] = ((normalise_rows(X[s:s + READ_BATCH]) - scaler.mean_) ** 2).sum(1)
    scaler.scale_ = float(np.sqrt(max(float(sq.mean()) / d, 1e-12)))
    return scaler


class ScaledRows:
    """Rows of ``X`` normalised and scaled by ``scaler`` when indexed (numpy ids, slices or torch ids)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, X, scaler: InputScaler):
        self.X, self.scaler = X, scaler
        self.shape = (len(X), int(X.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, torch.Tensor):
            key = key.numpy()
        return self.scaler.transform(normalise_rows(self.X[key]))

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The scaled rows ``idx`` as a CPU tensor (a minibatch)."""
        return torch.from_numpy(self[idx])
