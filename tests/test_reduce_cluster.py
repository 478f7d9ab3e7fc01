"""Reducers and the classic clusterers on well-separated synthetic blobs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_blobs
from imgclust.cluster import CLUSTERERS, KMeans, make_clusterer, needs_k, sweep_k
from imgclust.errors import ImgclustError
from imgclust.metrics import cluster_accuracy
from imgclust.reduce import Reducer, resolve_map_method

pytestmark = pytest.mark.usefixtures("limit_threads")


# --------------------------------------------------------------------------- reducers
@pytest.mark.parametrize("method,n_components,expected", [
    ("none", 5, (120, 8)),
    ("pca", 5, (120, 5)),
    ("pca", 50, (120, 8)),  # clipped to the input dimension
    ("tsne", 2, (120, 2)),
])
def test_reducer_shapes_and_determinism(blobs, method, n_components, expected):
    X, _ = blobs
    a = Reducer(method, n_components=n_components, random_state=0).fit_transform(X)
    b = Reducer(method, n_components=n_components, random_state=0).fit_transform(X)
    assert a.shape == expected and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_reducer_none_is_identity_and_pca_transform(blobs):
    X, _ = blobs
    np.testing.assert_array_equal(Reducer("none").fit_transform(X), X)
    r = Reducer("pca", n_components=3).fit(X)
    np.testing.assert_allclose(r.transform(X), r.embedding_, atol=1e-4)
    # PCA keeps the blob structure: 4 blobs, variance concentrated in the first components.
    assert r.model_.explained_variance_ratio_[:3].sum() > 0.99


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_reducer_2d_map_of_two_points(method):
    X = np.random.default_rng(0).standard_normal((2, 10)).astype(np.float32)
    assert Reducer(method, n_components=2).fit_transform(X).shape == (2, 2)


def test_umap_too_few_points():
    with pytest.raises(ImgclustError, match="UMAP needs at least 4 images"):
        Reducer("umap", n_components=2).fit(np.eye(3, dtype=np.float32))


def test_reducer_errors(blobs):
    X, _ = blobs
    with pytest.raises(ImgclustError, match="unknown reducer 'fancy'; valid: none, pca, umap, tsne"):
        Reducer("fancy").fit(X)
    with pytest.raises(ImgclustError, match="t-SNE is for 2-D or 3-D maps"):
        Reducer("tsne", n_components=5).fit(X)
    r = Reducer("tsne", n_components=2).fit(X[:20])
    with pytest.raises(ImgclustError, match="t-SNE cannot place new points"):
        r.transform(X[:3])


def test_umap_small(tmp_path):
    """The one UMAP test (numba compilation is slow): shape, determinism, blobs stay apart."""
    X, y = make_blobs(n_per=20, centers=3, dim=16)
    a = Reducer("umap", n_components=2, n_neighbors=10, random_state=0).fit_transform(X)
    b = Reducer("umap", n_components=2, n_neighbors=10, random_state=0).fit_transform(X)
    assert a.shape == (60, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)
    labels = KMeans(3).fit(a).labels_
    assert cluster_accuracy(y, labels)[0] == 1.0
    assert resolve_map_method("auto") == "umap"


# --------------------------------------------------------------------------- clusterers
@pytest.mark.filterwarnings("ignore:Graph is not fully connected")  # separated blobs: exactly the point
@pytest.mark.parametrize("method", ["kmeans", "kmedoids", "agglomerative", "spectral"])
def test_clusterers_recover_blobs_exactly(blobs, method):
    X, y = blobs
    model = make_clusterer(method, n_clusters=4, random_state=0).fit(X)
    labels = np.asarray(model.labels_)
    assert labels.shape == (120,) and set(labels.tolist()) == {0, 1, 2, 3}
    acc, mapping = cluster_accuracy(y, labels)
    assert acc == 1.0 and len(mapping) == 4
    assert model.cluster_centers_.shape == (4, 8)
    # predict on the training points and on slightly moved points agrees with labels_
    np.testing.assert_array_equal(model.predict(X), labels)
    np.testing.assert_array_equal(model.predict(X + 0.01), labels)


def test_kmedoids_centres_are_data_points(blobs):
    X, _ = blobs
    m = make_clusterer("kmedoids", n_clusters=4).fit(X)
    np.testing.assert_array_equal(m.cluster_centers_, X[m.medoid_indices_])
    assert m.inertia_ > 0


def test_kmeans_predict_and_inertia(blobs):
    X, y = blobs
    m = KMeans(n_clusters=4, random_state=3).fit(X)
    np.testing.assert_array_equal(m.predict(X), m.labels_)
    expected = sum(((X[m.labels_ == c] - m.cluster_centers_[c]) ** 2).sum() for c in range(4))
    assert m.inertia_ == pytest.approx(expected, rel=1e-4)
    # The centres are the blob means.
    for c in range(4):
        np.testing.assert_allclose(m.cluster_centers_[c], X[m.labels_ == c].mean(0), atol=1e-4)
    new = np.stack([X[y == c].mean(0) for c in range(4)])
    pred = m.predict(new)
    assert len(set(pred.tolist())) == 4


def test_kmeans_deterministic_per_seed(blobs):
    X, _ = blobs
    a = KMeans(4, random_state=7).fit(X).labels_
    b = KMeans(4, random_state=7).fit(X).labels_
    np.testing.assert_array_equal(a, b)


def test_hdbscan_finds_blobs_and_noise():
    X, y = make_blobs(n_per=30, centers=3, dim=4)
    rng = np.random.default_rng(1)
    outliers = rng.uniform(-40, 60, (6, 4)).astype(np.float32)
    Xo = np.concatenate([X, outliers])
    m = make_clusterer("hdbscan", min_cluster_size=10).fit(Xo)
    assert not needs_k("hdbscan")
    labels = m.labels_
    assert -1 in labels
    assert (labels[len(X):] == -1).all()  # every far-away outlier is noise
    assert set(labels[: len(X)].tolist()) == {0, 1, 2}
    assert cluster_accuracy(y, labels[: len(X)])[0] == 1.0
    assert m.cluster_centers_.shape == (3, 4)
    assert m.probabilities_.shape == (len(Xo),)


def test_registry_unknown_method():
    with pytest.raises(ImgclustError) as ei:
        make_clusterer("kmeens", n_clusters=3)
    msg = str(ei.value)
    assert "unknown method 'kmeens'" in msg
    for name in ("kmeans", "kmedoids", "hdbscan", "agglomerative", "spectral", "scan", "temi"):
        assert name in msg and name in CLUSTERERS
    with pytest.raises(ImgclustError, match="unknown method"):
        needs_k("nope")


@pytest.mark.parametrize("method", ["kmeans", "kmedoids", "agglomerative", "spectral"])
def test_k_larger_than_n(method):
    X, _ = make_blobs(n_per=2, centers=2)
    with pytest.raises(ImgclustError, match=r"k=5 is larger than the number of images \(4\)"):
        make_clusterer(method, n_clusters=5).fit(X)


@pytest.mark.parametrize("k", [None, 1])
def test_k_missing_or_too_small(blobs, k):
    X, _ = blobs
    with pytest.raises(ImgclustError, match="k must be at least 2" if k == 1 else "needs a number of clusters"):
        make_clusterer("kmeans", n_clusters=k).fit(X)


def test_estimator_passthrough():
    est = KMeans(3)
    assert make_clusterer(est, n_clusters=9) is est


def test_sweep_k_picks_four(blobs):
    X, _ = blobs
    sw = sweep_k(X, "kmeans", ks=[2, 3, 4, 5, 6, 7])
    assert sw.best_k == 4 and sw.criterion == "silhouette"
    assert sw.ks == [2, 3, 4, 5, 6, 7]
    assert len(sw.inertia) == len(sw.silhouette) == 6
    assert all(isinstance(v, float) for v in sw.inertia + sw.silhouette)
    assert sw.silhouette[2] == max(sw.silhouette) and sw.silhouette[2] > 0.9
    assert sw.inertia[0] > sw.inertia[1] > sw.inertia[2]  # the elbow falls to k=4
    assert sw.to_dict()["best_k"] == 4


def test_sweep_k_default_range_and_other_method(blobs):
    X, _ = blobs
    sw = sweep_k(X, "agglomerative")
    assert sw.ks == list(range(2, 16))  # 2..sqrt(2N) for N=120
    assert sw.best_k == 4
    assert sw.inertia == [None] * len(sw.ks)  # agglomerative has no inertia
    assert all(s is not None for s in sw.silhouette)


def test_sweep_k_too_few_points():
    with pytest.raises(ImgclustError, match="needs at least 3 images"):
        sweep_k(np.zeros((2, 3), np.float32))
