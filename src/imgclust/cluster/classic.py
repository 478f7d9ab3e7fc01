"""Classic clusterers: k-means (faiss), k-medoids (FasterPAM), HDBSCAN, agglomerative, spectral."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import InputError

__all__ = ["KMeans", "KMedoids", "HDBSCAN", "Agglomerative", "Spectral"]


def _check_k(X: np.ndarray, k: int | None) -> int:
    if k is None:
        raise InputError("this method needs a number of clusters: pass --k N or --k auto")
    if len(X) < 2:
        raise InputError("clustering needs at least 2 images (got 1 sample)")
    k = int(k)
    if k < 2:
        raise InputError(f"k must be at least 2 (got {k})")
    if k > len(X):
        raise InputError(f"k={k} is larger than the number of images ({len(X)})")
    return k


def _fit_input(est, X, dtype=np.float32) -> np.ndarray:
    """Validated, C-contiguous training data; records ``n_features_in_`` (scikit-learn contract)."""
    return np.ascontiguousarray(validate_data(est, X, dtype=dtype))


def _predict_input(est, X) -> np.ndarray:
    """Validated data for ``predict``: fitted, same number of features as in ``fit``."""
    check_is_fitted(est)
    return np.ascontiguousarray(validate_data(est, X, dtype=np.float32, reset=False))


def _nearest(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1) if len(X) * len(centers) < 4_000_000 else None
    if d is None:
        import faiss

        index = faiss.IndexFlatL2(centers.shape[1])
        index.add(np.ascontiguousarray(centers, np.float32))
        dist, lab = index.search(np.ascontiguousarray(X, np.float32), 1)
        return lab[:, 0], dist[:, 0]
    lab = d.argmin(1)
    return lab, d[np.arange(len(X)), lab]


class KMeans(ClusterMixin, BaseEstimator):
    """Lloyd's k-means with faiss, seeded by k-means++; the best of ``n_init`` restarts is kept.

    faiss seeds with random points, which on small, well separated data often merges two
    clusters; scikit-learn's ``kmeans_plusplus`` seeding fixes that at negligible cost, and
    faiss then runs the iterations.

    Args:
        n_clusters: Number of clusters.
        n_init: Restarts, each with its own k-means++ seeding.
        max_iter: Lloyd iterations per restart.
        init: ``k-means++`` or ``random`` (faiss's own sampling).
        spherical: Normalise centroids each step (cosine k-means).
        random_state: Seed.
    """

    needs_k = True

    def __init__(self, n_clusters: int | None = 8, n_init: int = 10, max_iter: int = 100,
                 init: str = "k-means++", spherical: bool = False, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.init = init
        self.spherical = spherical
        self.random_state = random_state

    def fit(self, X, y=None):
        """Cluster ``X`` (N, D); sets ``labels_`` (and centres); returns ``self``."""
        import faiss
        from sklearn.cluster import kmeans_plusplus

        X = _fit_input(self, X)
        k = _check_k(X, self.n_clusters)
        best = None
        for r in range(max(1, int(self.n_init))):
            seed = int(self.random_state) * 1000 + r
            km = faiss.Kmeans(X.shape[1], k, niter=self.max_iter, nredo=1, seed=seed + 1,
                              spherical=self.spherical, max_points_per_centroid=max(256, len(X) // k + 1),
                              min_points_per_centroid=1, verbose=False)
            if self.init == "k-means++":
                init, _ = kmeans_plusplus(X, k, random_state=seed)
                km.train(X, init_centroids=np.ascontiguousarray(init, np.float32))
            else:
                km.train(X)
            labels, d = _nearest(X, km.centroids)
            inertia = float(d.sum())
            if best is None or inertia < best[0]:
                best = (inertia, km.centroids.copy(), labels, len(getattr(km, "iteration_stats", [])) or self.max_iter)
        self.inertia_, self.cluster_centers_, labels, self.n_iter_ = best
        self.labels_ = labels.astype(np.int64)
        return self

    def predict(self, X):
        """Index of the nearest cluster centre of each row."""
        return _nearest(_predict_input(self, X), self.cluster_centers_)[0].astype(np.int64)


class KMedoids(ClusterMixin, BaseEstimator):
    """k-medoids with FasterPAM (the ``kmedoids`` package) on euclidean distances.

    Centres are real images (medoids), so they are robust to outliers. Memory is O(N^2): fine
    to a few tens of thousands of images.
    """

    needs_k = True

    def __init__(self, n_clusters: int | None = 8, max_iter: int = 100, init: str = "random",
                 random_state: int = 0):
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.init = init
        self.random_state = random_state

    def fit(self, X, y=None):
        """Cluster ``X`` (N, D); sets ``labels_`` (and centres); returns ``self``."""
        import kmedoids
        from sklearn.metrics import pairwise_distances

        X = _fit_input(self, X)
        k = _check_k(X, self.n_clusters)
        diss = pairwise_distances(X, metric="euclidean").astype(np.float64)
        res = kmedoids.fasterpam(diss, k, max_iter=self.max_iter, init=self.init, random_state=self.random_state)
        self.medoid_indices_ = np.asarray(res.medoids, dtype=np.int64)
        self.cluster_centers_ = X[self.medoid_indices_]
        self.labels_ = np.asarray(res.labels, dtype=np.int64)
        self.inertia_ = float(res.loss)
        self.n_iter_ = int(res.n_iter)
        return self

    def predict(self, X):
        """Index of the nearest cluster centre of each row."""
        return _nearest(_predict_input(self, X), self.cluster_centers_)[0].astype(np.int64)


class HDBSCAN(ClusterMixin, BaseEstimator):
    """HDBSCAN (scikit-learn): finds the number of clusters itself; noise gets label -1."""

    needs_k = False

    def __init__(self, min_cluster_size: int | None = None, min_samples: int | None = None,
                 random_state: int = 0):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.random_state = random_state  # unused: HDBSCAN is deterministic

    def fit(self, X, y=None):
        """Cluster ``X`` (N, D); sets ``labels_`` (and centres); returns ``self``."""
        from sklearn.cluster import HDBSCAN as _HDBSCAN

        X = _fit_input(self, X, dtype=np.float64)
        mcs = self.min_cluster_size or max(5, len(X) // 100)
        if len(X) < 2:
            raise InputError("HDBSCAN needs at least 2 images (got 1 sample)")
        model = _HDBSCAN(min_cluster_size=min(mcs, len(X)), min_samples=self.min_samples,
                         store_centers="centroid").fit(X)
        self.labels_ = model.labels_.astype(np.int64)
        self.probabilities_ = model.probabilities_
        centers = getattr(model, "centroids_", None)
        self.cluster_centers_ = (np.asarray(centers, np.float32) if centers is not None and len(centers)
                                 else np.zeros((0, X.shape[1]), np.float32))
        return self

    def predict(self, X):
        """Nearest cluster centroid of each row (-1 for all when HDBSCAN found only noise)."""
        X = _predict_input(self, X)
        if not len(self.cluster_centers_):
            return np.full(len(X), -1, dtype=np.int64)
        return _nearest(X, self.cluster_centers_)[0].astype(np.int64)


class _CentroidMixin:
    def _set_centers(self, X):
        k = int(self.labels_.max()) + 1
        self.cluster_centers_ = np.stack([X[self.labels_ == c].mean(0) for c in range(k)]).astype(np.float32)

    def predict(self, X):
        """Index of the nearest cluster centre of each row."""
        return _nearest(_predict_input(self, X), self.cluster_centers_)[0].astype(np.int64)


class Agglomerative(_CentroidMixin, ClusterMixin, BaseEstimator):
    """Ward agglomerative clustering (scikit-learn); ``predict`` uses the cluster means."""

    needs_k = True

    def __init__(self, n_clusters: int | None = 8, linkage: str = "ward", random_state: int = 0):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.random_state = random_state  # unused: deterministic

    def fit(self, X, y=None):
        """Cluster ``X`` (N, D); sets ``labels_`` (and centres); returns ``self``."""
        from sklearn.cluster import AgglomerativeClustering

        X = _fit_input(self, X)
        k = _check_k(X, self.n_clusters)
        self.labels_ = AgglomerativeClustering(n_clusters=k, linkage=self.linkage).fit_predict(X).astype(np.int64)
        self._set_centers(X)
        return self


class Spectral(_CentroidMixin, ClusterMixin, BaseEstimator):
    """Spectral clustering on a k-nearest-neighbour graph (scikit-learn)."""

    needs_k = True

    def __init__(self, n_clusters: int | None = 8, n_neighbors: int = 10, random_state: int = 0):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X, y=None):
        """Cluster ``X`` (N, D); sets ``labels_`` (and centres); returns ``self``."""
        from sklearn.cluster import SpectralClustering

        X = _fit_input(self, X)
        k = _check_k(X, self.n_clusters)
        model = SpectralClustering(n_clusters=k, affinity="nearest_neighbors",
                                   n_neighbors=min(self.n_neighbors, len(X) - 1), assign_labels="cluster_qr",
                                   random_state=self.random_state)
        self.labels_ = model.fit_predict(X).astype(np.int64)
        self._set_centers(X)
        return self
