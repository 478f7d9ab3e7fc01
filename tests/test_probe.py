"""Linear probe and k-means baseline (imgclust.probe)."""

import numpy as np
import pytest

from imgclust.errors import ImgclustError
from imgclust.explore.probe import kmeans_baseline, linear_probe


def _blobs(n_per=60, k=4, d=16, sigma=0.05, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(k, d))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    y = np.repeat(np.arange(k), n_per)
    X = C[y] + sigma * rng.normal(size=(len(y), d))
    return X.astype(np.float32), y


def test_linear_probe_separable_blobs_is_perfect():
    X, y = _blobs()
    res = linear_probe(X * 7.0, y, cv=5, random_state=0)  # scale is irrelevant: rows are normalised
    assert res["acc"] == pytest.approx(1.0)
    assert res["acc_std"] == pytest.approx(0.0)
    assert res["nmi"] == pytest.approx(1.0) and res["ari"] == pytest.approx(1.0)
    assert res["cv"] == 5 and len(res["fold_acc"]) == 5 and res["n"] == len(y) and res["n_classes"] == 4


def test_linear_probe_string_labels_and_small_classes():
    X, y = _blobs(n_per=3)
    names = np.array(["cat", "dog", "fish", "owl"])[y]
    res = linear_probe(X, names, cv=5)
    assert res["cv"] == 3  # reduced to the smallest class size
    assert 0.0 <= res["acc"] <= 1.0


def test_linear_probe_noise_labels_near_chance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    y = rng.integers(0, 2, size=200)
    assert linear_probe(X, y)["acc"] < 0.7


def test_linear_probe_errors():
    X, y = _blobs()
    with pytest.raises(ImgclustError):
        linear_probe(X, y[:-1])
    with pytest.raises(ImgclustError):
        linear_probe(X, np.zeros(len(y)))


def test_kmeans_baseline_keys_and_values():
    X, y = _blobs(sigma=0.3)
    res = kmeans_baseline(X, y, n_clusters=4, n_init=3, seeds=(0, 1, 2))
    for key in ("acc", "nmi", "ari"):
        assert key in res and f"{key}_std" in res
        assert 0.0 <= res[f"{key}_std"] <= 1.0
    assert len(res["runs"]) == 3 and res["seeds"] == [0, 1, 2] and res["n_init"] == 3
    assert res["acc"] > 0.9


def test_kmeans_baseline_separable_is_perfect_and_deterministic():
    X, y = _blobs()
    a = kmeans_baseline(X, y, n_clusters=4, seeds=(0, 1))
    b = kmeans_baseline(X, y, n_clusters=4, seeds=(0, 1))
    assert a["acc"] == pytest.approx(1.0) and a["acc_std"] == pytest.approx(0.0)
    assert a["runs"] == b["runs"]
