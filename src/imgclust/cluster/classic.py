"""Classic clusterers: k-means (faiss), k-medoids (FasterPAM), HDBSCAN, agglomerative, spectral."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from ..errors import InputError
from ..limits import HDBSCAN_FIT_ROWS, KMEANS_FULL_ROWS, KMEANS_MAX_POINTS_PER_CENTROID, check_size
from ._scale import assign_batches, radius_assign, sample_rows, train_kmeans_large
from ._validation import validated

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
    return validated(est, X, dtype=dtype)


def _predict_input(est, X) -> np.ndarray:
    """Validated data for ``predict``: fitted, same number of features as in ``fit``."""
    return validated(est, X, reset=False)


def _nearest(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1) if len(X) * len(centers) < 4_000_000 else None
    if d is None:  # streamed through faiss: never an N x k matrix
        lab, dist = assign_batches(X, centers, k=1)
        return lab[:, 0], dist[:, 0]
    lab = d.argmin(1)
    return lab, d[np.arange(len(X)), lab]


class KMeans(ClusterMixin, BaseEstimator):
    """Lloyd's k-means with faiss, seeded by k-means++; the best of ``n_init`` restarts is kept.

    faiss seeds with random points, which on small, well separated data often merges two
    clusters; scikit-learn's ``kmeans_plusplus`` seeding fixes that at negligible cost, and
    faiss then runs the iterations.

    Past :data:`~imgclust.limits.KMEANS_FULL_ROWS` rows the centroids are trained on a sample
    of ``max(k * max_points_per_centroid, KMEANS_FULL_ROWS)`` rows (one restart, bounded seeding, see
    :func:`~imgclust.cluster._scale.train_kmeans_large`) and every row is then assigned in
    streaming batches; ``nearest_sq_distances_`` keeps each row's two nearest squared distances.

    Args:
        n_clusters: Number of clusters.
        n_init: Restarts, each with its own k-means++ seeding.
        max_iter: Lloyd iterations per restart.
        init: ``k-means++`` or ``random`` (faiss's own sampling).
        spherical: Normalise centroids each step (cosine k-means).
        random_state: Seed.
        max_points_per_centroid: Training rows per centroid on the large-N path.
        engine: Where the large-N path assigns every row: ``local`` (streamed faiss batches here)
            or ``ray`` (the same blocks on Ray actors, :mod:`imgclust.cluster._scale_ray`; same labels).
        ray_address: Ray cluster to join with ``engine="ray"`` (default: start Ray here).
    """

    needs_k = True

    def __init__(self, n_clusters: int | None = 8, n_init: int = 10, max_iter: int = 100,
                 init: str = "k-means++", spherical: bool = False, random_state: int = 0,
                 max_points_per_centroid: int = KMEANS_MAX_POINTS_PER_CENTROID, engine: str = "local",
                 ray_address: str | None = None):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.init = init
        self.spherical = spherical
        self.random_state = random_state
        self.max_points_per_centroid = max_points_per_centroid
        self.engine = engine
        self.ray_address = ray_address

    def _fit_large(self, X, k: int, raw=None):
        centers, self.n_iter_ = train_kmeans_large(
            X, k, max_iter=self.max_iter, spherical=self.spherical, init=self.init,
            random_state=int(self.random_state), max_points_per_centroid=int(self.max_points_per_centroid))
        if self.engine == "ray":
            from ._scale_ray import assign_batches_ray

            # A memory map as given (the store's shard) is reopened by the actors instead of copied.
            mapped = isinstance(raw, np.memmap) and raw.dtype == np.float32 and raw.shape == X.shape
            labels, d2 = assign_batches_ray(raw if mapped else X, centers, k=2, address=self.ray_address)
        else:
            labels, d2 = assign_batches(X, centers, k=2)
        self.cluster_centers_, self.labels_ = centers, labels[:, 0].copy()
        self.nearest_sq_distances_ = d2
        self.inertia_ = float(d2[:, 0].sum(dtype=np.float64))
        return self

    def fit(self, X, y=None):
        """Cluster ``X`` (N, D); sets ``labels_`` (and centres); returns ``self``."""
        import faiss
        from sklearn.cluster import kmeans_plusplus

        raw, X = X, validated(self, X, lazy_ok=True)  # the store's multi-shard view stays lazy
        k = _check_k(X, self.n_clusters)
        if self.engine not in ("local", "ray"):
            raise InputError(f"unknown k-means engine {self.engine!r}; valid: local, ray")
        if len(X) > KMEANS_FULL_ROWS:
            return self._fit_large(X, k, raw)
        X = np.asarray(X)
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
        check_size("kmedoids", len(X))
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
    """HDBSCAN (scikit-learn): finds the number of clusters itself; noise gets label -1.

    Past ``max_fit_rows`` rows (default :data:`~imgclust.limits.HDBSCAN_FIT_ROWS`) it fits a
    random sample, and every other row is approximately predicted: the nearest cluster
    centroid when within that cluster's radius (the largest centroid distance of its sampled
    members), else noise. ``probabilities_`` of the predicted rows shrink linearly with that
    distance.
    """

    needs_k = False

    def __init__(self, min_cluster_size: int | None = None, min_samples: int | None = None,
                 random_state: int = 0, max_fit_rows: int = HDBSCAN_FIT_ROWS):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.random_state = random_state  # used only to draw the sample on large inputs
        self.max_fit_rows = max_fit_rows

    def _fit_rows(self, X):
        from sklearn.cluster import HDBSCAN as _HDBSCAN

        X = np.asarray(X, np.float64)
        mcs = self.min_cluster_size or max(5, len(X) // 100)
        model = _HDBSCAN(min_cluster_size=min(mcs, len(X)), min_samples=self.min_samples,
                         store_centers="centroid").fit(X)
        centers = getattr(model, "centroids_", None)
        centers = (np.asarray(centers, np.float32) if centers is not None and len(centers)
                   else np.zeros((0, X.shape[1]), np.float32))
        return model.labels_.astype(np.int64), np.asarray(model.probabilities_, np.float64), centers

    def fit(self, X, y=None):
        """Cluster ``X`` (N, D); sets ``labels_`` (and centres); returns ``self``."""
        X = _fit_input(self, X, dtype=np.float32)
        if len(X) < 2:
            raise InputError("HDBSCAN needs at least 2 images (got 1 sample)")
        if len(X) <= int(self.max_fit_rows):
            self.labels_, self.probabilities_, self.cluster_centers_ = self._fit_rows(X)
            return self
        idx, sample = sample_rows(X, int(self.max_fit_rows), int(self.random_state))
        lab_s, prob_s, centers = self._fit_rows(sample)
        radius = np.zeros(len(centers), np.float32)
        for c in range(len(centers)):
            radius[c] = np.linalg.norm(sample[lab_s == c] - centers[c], axis=1).max()
        labels, d = radius_assign(X, centers, radius)
        with np.errstate(invalid="ignore", divide="ignore"):
            proba = np.where(labels >= 0, 1 - d / np.maximum(radius[np.maximum(labels, 0)], 1e-12), 0.0)
        labels[idx], proba[idx] = lab_s, prob_s  # sampled rows keep their fitted labels
        self.labels_, self.probabilities_, self.cluster_centers_ = labels, proba, centers
        self.fit_rows_ = idx
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
        check_size("agglomerative", len(X))
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
        check_size("spectral", len(X))
        model = SpectralClustering(n_clusters=k, affinity="nearest_neighbors",
                                   n_neighbors=min(self.n_neighbors, len(X) - 1), assign_labels="cluster_qr",
                                   random_state=self.random_state)
        self.labels_ = model.fit_predict(X).astype(np.int64)
        self._set_centers(X)
        return self
