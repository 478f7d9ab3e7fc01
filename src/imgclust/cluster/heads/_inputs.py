"""Input checks and scaling shared by the clustering heads.

* :func:`as_features` / :func:`as_views`: validate and L2-normalise embeddings (and extra views).
* :func:`check_k`: the number of clusters, with the classic clusterers' errors.
* :class:`InputScaler`: rows centred and globally rescaled so the heads see unit average
  per-dimension variance whatever the encoder (CNN features are all positive, which makes an
  uncentred linear head slow to train).
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError

__all__ = ["as_features", "as_views", "check_k", "resolve_torch_device", "InputScaler"]


def as_features(X, name: str = "X") -> np.ndarray:
    """Validate a 2-D float array and L2-normalise its rows (float32, C-contiguous)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (images x dimensions), got shape {X.shape}")
    if len(X) == 0:
        raise InputError(f"{name} is empty")
    if not np.isfinite(X).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12))


def as_views(views, n: int, dim: int) -> np.ndarray | None:
    """Validate extra views ``(N, V, D)`` (a single view may be ``(N, D)``); rows normalised."""
    if views is None:
        return None
    V = np.asarray(views, dtype=np.float32)
    if V.ndim == 2:
        V = V[:, None, :]
    if V.ndim != 3 or V.shape[0] != n or V.shape[2] != dim:
        raise InputError(f"views must have shape (N={n}, V, D={dim}); got {V.shape}")
    if V.shape[1] == 0:
        return None
    flat = as_features(V.reshape(-1, dim), "views")
    return flat.reshape(V.shape)


def check_k(n: int, k) -> int:
    """The number of clusters as an int, with the same errors as the classic clusterers."""
    if k is None:
        raise InputError("this method needs a number of clusters: pass --k N or --k auto")
    k = int(k)
    if k < 2:
        raise InputError(f"k must be at least 2 (got {k})")
    if k > n:
        raise InputError(f"k={k} is larger than the number of images ({n})")
    return k


def resolve_torch_device(device: str) -> str:
    from ...encoders.base import resolve_device

    return resolve_device(device)


class InputScaler:
    """Centre and globally rescale L2-normalised embeddings (a fixed affine map).

    The mean is subtracted (pretrained features share a large common component that carries
    no cluster information) and everything is divided by one scalar so the average
    per-dimension variance is 1: default layer initialisations then give O(1) logits for
    any embedding dimension. One global scale (not per-dimension whitening) keeps the
    cosine geometry the neighbours were mined in.
    """

    def fit(self, X: np.ndarray) -> InputScaler:
        self.mean_ = X.mean(0).astype(np.float32)
        var = float(((X - self.mean_) ** 2).sum(1).mean()) / X.shape[1]
        self.scale_ = float(np.sqrt(max(var, 1e-12)))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)
