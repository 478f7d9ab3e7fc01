"""Dimensionality reduction: ``none``, ``pca``, ``umap``, ``tsne`` behind one estimator."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import ImgclustError, require

__all__ = ["Reducer", "REDUCERS", "resolve_map_method"]

REDUCERS = ("none", "pca", "umap", "tsne")


def resolve_map_method(method: str) -> str:
    """``auto`` -> ``umap`` when umap-learn imports, else ``tsne``."""
    if method != "auto":
        return method
    try:
        import umap  # noqa: F401

        return "umap"
    except ImportError:  # pragma: no cover - umap-learn is a core dependency
        return "tsne"


class Reducer(TransformerMixin, BaseEstimator):
    """Reduce embeddings for clustering (e.g. 50-d) or for the 2-D map.

    Args:
        method: ``none``, ``pca``, ``umap`` or ``tsne`` (``auto`` picks umap, else tsne).
        n_components: Output dimension; clipped to what the data allows.
        metric: Distance for UMAP / t-SNE (``cosine`` suits normalised embeddings).
        n_neighbors: UMAP neighbourhood size.
        perplexity: t-SNE perplexity (clipped for small N).
        random_state: Seed.

    ``embedding_`` holds the transformed training data after ``fit``. t-SNE cannot transform
    new points; ``transform`` then raises.
    """

    def __init__(self, method: str = "pca", n_components: int = 50, metric: str = "cosine",
                 n_neighbors: int = 15, perplexity: float = 30.0, random_state: int = 0):
        self.method = method
        self.n_components = n_components
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.perplexity = perplexity
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32 throughout
        return tags

    def fit(self, X, y=None):
        """Fit the reducer on ``X`` (N, D); ``embedding_`` holds the reduced training data."""
        X = validate_data(self, X, dtype=np.float32)
        method = resolve_map_method(self.method)
        if method not in REDUCERS:
            raise ImgclustError(f"unknown reducer {self.method!r}; valid: {', '.join(REDUCERS)} (or auto)")
        self.method_ = method
        n, d = X.shape
        # PCA and t-SNE can give min(n, d) components (a 2-D map of 2 images needs 2); UMAP's
        # spectral init needs fewer components than points (clipped again below).
        k = int(min(self.n_components, d, max(1, n - 1) if method == "umap" else n))
        if method == "none" or (method == "pca" and k >= d):
            self.model_ = None
            self.embedding_ = X.copy()
        elif method == "pca":
            from sklearn.decomposition import PCA

            self.model_ = PCA(n_components=k, random_state=self.random_state)
            self.embedding_ = self.model_.fit_transform(X).astype(np.float32)
        elif method == "umap":
            umap = require("umap", package="umap-learn")
            if n < 4:
                raise ImgclustError("UMAP needs at least 4 images; use --reduce pca")
            self.model_ = umap.UMAP(n_components=k if k < n - 1 else max(1, n - 2), metric=self.metric,
                                    n_neighbors=max(2, min(self.n_neighbors, n - 1)),
                                    random_state=self.random_state, n_jobs=1,
                                    init="spectral" if n > k + 2 else "random")
            self.embedding_ = np.asarray(self.model_.fit_transform(X), np.float32)
        else:
            from sklearn.manifold import TSNE

            if k > 3:
                raise ImgclustError("t-SNE is for 2-D or 3-D maps; use pca or umap for clustering input")
            perp = float(min(self.perplexity, max(1.0, (n - 1) / 3)))
            self.model_ = TSNE(n_components=k, metric=self.metric, perplexity=perp, init="pca",
                               random_state=self.random_state)
            self.embedding_ = np.asarray(self.model_.fit_transform(X), np.float32)
        return self

    def fit_transform(self, X, y=None):
        """Fit on ``X`` and return its reduced form (``embedding_``)."""
        return self.fit(X).embedding_

    def transform(self, X):
        """Reduce new rows with the fitted model (not available for t-SNE)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        if self.model_ is None:
            return X.copy()
        if self.method_ == "tsne":
            raise ImgclustError("t-SNE cannot place new points; use umap or pca for the map")
        if self.method_ == "pca":
            # In float64 so a row's coordinates do not depend on the batch it came in (float32
            # GEMM blocking differs with the batch size by ~1e-7, which breaks subset invariance).
            X = X.astype(np.float64)
        return np.asarray(self.model_.transform(X), np.float32)
