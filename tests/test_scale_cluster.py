"""The large-N paths, exercised at small N by lowering the thresholds in imgclust.limits' users."""

from __future__ import annotations

import numpy as np
import pytest

from imgclust.metrics import cluster_accuracy


def _blobs(n_per: int, k: int, dim: int = 16, seed: int = 0, spread: float = 0.05):
    rng = np.random.default_rng(seed)
    centers = np.eye(dim, dtype=np.float32)[:k]
    X = np.concatenate([c + spread * rng.standard_normal((n_per, dim)).astype(np.float32) for c in centers])
    y = np.repeat(np.arange(k), n_per)
    perm = rng.permutation(len(X))
    return X[perm], y[perm]


def test_kmeans_large_path_samples_trains_and_streams(monkeypatch):
    from imgclust.cluster import _scale, classic

    monkeypatch.setattr(classic, "KMEANS_FULL_ROWS", 500)
    monkeypatch.setattr(_scale, "KMEANS_FULL_ROWS", 500)
    monkeypatch.setattr(_scale, "KMEANS_SEED_ROWS", 200)
    X, y = _blobs(400, 6)
    km = classic.KMeans(n_clusters=6, max_points_per_centroid=40, random_state=0).fit(X)
    assert cluster_accuracy(y, km.labels_)[0] == 1.0
    assert km.nearest_sq_distances_.shape == (len(X), 2)
    assert (km.nearest_sq_distances_[:, 0] <= km.nearest_sq_distances_[:, 1]).all()
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    assert km.inertia_ == pytest.approx(float(km.nearest_sq_distances_[:, 0].sum()), rel=1e-5)


def test_assign_batches_equals_brute_force():
    from imgclust.cluster._scale import assign_batches

    rng = np.random.default_rng(1)
    X, C = rng.standard_normal((1000, 8)).astype(np.float32), rng.standard_normal((7, 8)).astype(np.float32)
    lab, d2 = assign_batches(X, C, k=2, batch=128)
    full = ((X[:, None] - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(lab[:, 0], full.argmin(1))
    np.testing.assert_allclose(d2, np.sort(full, 1)[:, :2], rtol=1e-4, atol=1e-4)


def test_hdbscan_fits_a_sample_and_predicts_the_rest():
    from imgclust.cluster.classic import HDBSCAN

    X, y = _blobs(500, 4, spread=0.02)
    X = np.concatenate([X, np.full((1, X.shape[1]), 5.0, np.float32)])  # one far outlier
    model = HDBSCAN(min_cluster_size=20, max_fit_rows=400, random_state=0).fit(X)
    assert len(model.fit_rows_) == 400
    assert model.labels_[-1] == -1  # outside every cluster's radius: noise
    assert cluster_accuracy(y, model.labels_[:-1])[0] > 0.97
    assert model.probabilities_.shape == (len(X),)


def test_knn_switches_to_ivf_above_the_exact_limit(monkeypatch):
    from imgclust import knn as knn_mod

    X, _ = _blobs(500, 8, dim=32, spread=0.3)
    exact_idx, _ = knn_mod.knn(X, 5)
    monkeypatch.setattr(knn_mod, "KNN_EXACT_ROWS", 100)
    import faiss

    assert isinstance(knn_mod.build_index(X), faiss.IndexIVFFlat)
    ivf_idx, sims = knn_mod.knn(X, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact_idx, ivf_idx)])
    assert recall > 0.9 and (ivf_idx != np.arange(len(X))[:, None]).all()


@pytest.mark.parametrize("method", ["kmedoids", "agglomerative", "spectral"])
def test_quadratic_methods_refuse_past_their_limit_naming_kmeans(monkeypatch, method):
    from imgclust import limits
    from imgclust.analyze import check_k
    from imgclust.cluster import make_clusterer
    from imgclust.errors import ImgclustError

    monkeypatch.setitem(limits.MAX_ROWS, method, (50, limits.MAX_ROWS[method][1]))
    X, _ = _blobs(20, 3)
    with pytest.raises(ImgclustError, match=r"over its limit of 50; use --method kmeans"):
        make_clusterer(method, n_clusters=3).fit(X)
    with pytest.raises(ImgclustError, match="kmeans"):
        check_k(method, 3, 51, method)  # refused before embedding
    make_clusterer(method, n_clusters=3).fit(X[:50])  # at the limit: still works


def test_stratified_sample_represents_every_cluster():
    from imgclust.sampling import stratified_sample

    labels = np.concatenate([np.zeros(10000, int), np.arange(1, 51).repeat(3), [-1] * 7])
    rows = stratified_sample(labels, 500, random_state=0)
    assert len(rows) <= 500 and len(np.unique(rows)) == len(rows)
    assert set(labels[rows]) == set(labels)
    assert (np.bincount(labels[rows] + 1)[2:] == 500 // (4 * 52)).all()  # the per-cluster floor
    np.testing.assert_array_equal(stratified_sample(labels[:100], 500), np.arange(100))
    assert len(stratified_sample(np.arange(1000), 10)) == 10  # more clusters than the cap


def test_map_on_a_sample_places_the_rest_beside_their_cluster(monkeypatch):
    from imgclust import analyze

    monkeypatch.setattr(analyze, "MAP_FIT_ROWS", 150)
    X, y = _blobs(200, 4)
    res = analyze.cluster_embeddings(X, reduce="none", map="pca", method="kmeans", k=4)
    assert res.coords.shape == (800, 2) and np.isfinite(res.coords).all()
    # Each cluster's points stay together on the map: nearest cluster centroid on the map is its own.
    cents = np.stack([res.coords[res.labels == c].mean(0) for c in range(4)])
    own = ((res.coords[:, None] - cents[None]) ** 2).sum(-1).argmin(1)
    assert (own == res.labels).mean() > 0.99


def test_report_past_its_cap_shows_a_stratified_sample_with_whole_counts(tmp_path):
    from imgclust.analyze import cluster_embeddings
    from imgclust.report import build_report
    from imgclust.report.builder import report_payload

    X, _ = _blobs(300, 10)
    X = np.concatenate([X, _blobs(5, 11, seed=3)[0][-5:]])  # a tiny 11th group
    res = cluster_embeddings(X, reduce="none", map="pca", method="kmeans", k=11)
    res.save(tmp_path)
    data, thumbs = report_payload(tmp_path, max_points=400)
    assert data["n"] <= 400 and data["n_total"] == len(X) and len(data["rows"]) == data["n"]
    assert {c["id"] for c in data["clusters"]} == set(res.labels.tolist())  # every cluster shown
    sizes = np.bincount(res.labels)
    for c in data["clusters"]:
        assert c["size"] == sizes[c["id"]] and c["shown"] == len(c["order"]) <= c["size"]
        assert max(c["order"]) < data["n"]
    assert max(data["nn"]) < data["n"] and len(data["x"]) == data["n"]
    assert data["cluster"] == res.labels[data["rows"]].tolist()
    html = build_report(tmp_path, max_points=400).read_text()
    assert "stratified sample" in html


def test_the_kmeans_engine_is_checked():
    from imgclust.cluster.classic import KMeans
    from imgclust.errors import ImgclustError

    with pytest.raises(ImgclustError, match="k-means engine"):
        KMeans(n_clusters=2, engine="spark").fit(np.random.default_rng(0).standard_normal((20, 3)))
