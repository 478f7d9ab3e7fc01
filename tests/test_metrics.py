"""Clustering scores checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_blobs
from imgclust.metrics import (
    aggregate_runs,
    cluster_accuracy,
    confusion,
    external_scores,
    internal_scores,
    neighbor_accuracy,
)


def test_acc_permuted_labels_is_one():
    y_true = ["cat"] * 3 + ["dog"] * 3 + ["eel"] * 2
    y_pred = [2, 2, 2, 0, 0, 0, 1, 1]
    acc, mapping = cluster_accuracy(y_true, y_pred)
    assert acc == 1.0
    assert mapping == {2: "cat", 0: "dog", 1: "eel"}


def test_acc_hand_case_two_clusters():
    # contingency (rows true 0/1, cols pred 0/1) = [[1, 2], [3, 0]];
    # best one-to-one match: class 0 -> cluster 1 (2) + class 1 -> cluster 0 (3) = 5 of 6.
    acc, mapping = cluster_accuracy([0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 0])
    assert acc == 5 / 6
    assert mapping == {1: 0, 0: 1}


def test_acc_fewer_clusters_than_classes():
    # [[2, 0], [1, 1], [0, 2]]: at most two classes can be matched -> (2 + 2) / 6.
    acc, mapping = cluster_accuracy([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1])
    assert acc == 4 / 6
    assert mapping == {0: 0, 1: 2}


def test_acc_noise_counts_as_wrong():
    # Noise (-1) is one more column; Hungarian still maps each class to one column only.
    acc, _ = cluster_accuracy(["a", "a", "a", "b", "b", "b"], [0, 0, -1, 1, 1, -1])
    assert acc == 4 / 6


def test_confusion_exact():
    table, classes, clusters = confusion(["b", "a", "a", "b", "c"], [1, 0, 0, -1, 1])
    assert classes == ["a", "b", "c"]
    assert clusters == [-1, 0, 1]
    assert table.tolist() == [[0, 2, 0], [1, 0, 1], [0, 0, 1]]
    assert table.dtype == np.int64


def test_nmi_ari_identical_and_permuted():
    y = [0, 0, 1, 1, 2, 2, 2]
    for pred in (y, [5, 5, 3, 3, 9, 9, 9]):
        s = external_scores(y, pred)
        assert s["acc"] == 1.0
        assert s["nmi"] == pytest.approx(1.0, abs=1e-12)
        assert s["ari"] == pytest.approx(1.0, abs=1e-12)


def test_nmi_ari_hand_values():
    # Orthogonal labelling: no information shared; ARI = (0 - 2/3) / (2 - 2/3) = -0.5.
    s = external_scores([0, 0, 1, 1], [0, 1, 0, 1])
    assert s["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert s["ari"] == pytest.approx(-0.5, abs=1e-12)
    assert s["acc"] == 0.5
    # Everything in one cluster: NMI 0, ARI 0.
    s = external_scores([0, 0, 1, 1], [7, 7, 7, 7])
    assert s["nmi"] == pytest.approx(0.0, abs=1e-12) and s["ari"] == pytest.approx(0.0, abs=1e-12)
    assert s["acc"] == 0.5


def test_internal_scores_on_blobs(blobs):
    X, y = blobs
    s = internal_scores(X, y)
    assert set(s) == {"silhouette", "calinski_harabasz", "davies_bouldin"}
    assert s["silhouette"] > 0.8
    assert s["calinski_harabasz"] > 1000
    assert 0 < s["davies_bouldin"] < 0.1
    # A random labelling scores much worse.
    bad = internal_scores(X, np.random.default_rng(0).integers(0, 4, len(X)))
    assert bad["silhouette"] < 0.1 and bad["davies_bouldin"] > 1


def test_internal_scores_one_cluster_is_none(blobs):
    X, _ = blobs
    assert internal_scores(X, np.zeros(len(X), int)) == {"silhouette": None, "calinski_harabasz": None,
                                                         "davies_bouldin": None}
    # Every point its own cluster: undefined too.
    assert internal_scores(X[:5], np.arange(5))["silhouette"] is None


def test_internal_scores_exclude_noise(blobs):
    X, y = blobs
    far = np.full((5, X.shape[1]), 500.0, np.float32)
    with_noise = internal_scores(np.concatenate([X, far]), np.concatenate([y, [-1] * 5]))
    assert with_noise == pytest.approx(internal_scores(X, y))
    # Only noise and one cluster left: None.
    assert internal_scores(X[:10], np.array([0] * 5 + [-1] * 5))["silhouette"] is None


def test_neighbor_accuracy():
    X, y = make_blobs(n_per=10, centers=3, dim=6)
    assert neighbor_accuracy(X, y, k=5) == 1.0
    # Shuffled labels: far from perfect (expected about 1/3).
    yr = np.random.default_rng(0).permutation(y)
    assert neighbor_accuracy(X, yr, k=5) < 0.6


def test_neighbor_accuracy_hand_case():
    # Two tight pairs on orthogonal axes; each point's single nearest neighbour is its partner.
    X = np.array([[1, 0], [0.99, 0.01], [0, 1], [0.01, 0.99]], np.float32)
    assert neighbor_accuracy(X, ["a", "a", "b", "b"], k=1) == 1.0
    assert neighbor_accuracy(X, ["a", "b", "a", "b"], k=1) == 0.0


def test_aggregate_runs():
    runs = [{"acc": 0.5, "nmi": 0.2, "sil": None}, {"acc": 1.0, "nmi": 0.4, "sil": None}]
    agg = aggregate_runs(runs)
    assert agg == {"acc": 0.75, "acc_std": 0.25, "nmi": pytest.approx(0.3), "nmi_std": pytest.approx(0.1),
                   "sil": None}
    single = {"acc": 0.9, "nmi": None}
    assert aggregate_runs([single]) == single and "acc_std" not in aggregate_runs([single])
    # Missing (None) values are left out of the mean.
    assert aggregate_runs([{"s": None}, {"s": 0.4}, {"s": 0.6}]) == {"s": 0.5, "s_std": pytest.approx(0.1)}


# --------------------------------------------------------------------------- per-cluster summaries
def test_cluster_examples_order():
    from imgclust.report.summary import cluster_examples

    labels = np.array([0, 0, 0, 1, 1, -1])
    dist = np.array([0.5, 0.1, 0.3, np.nan, 0.2, 9.0])
    assert cluster_examples(labels, dist, n=2) == {-1: [5], 0: [1, 2], 1: [4, 3]}
    # Outliers: farthest first; an unknown (NaN) distance counts as farthest.
    assert cluster_examples(labels, dist, n=None, outliers=True) == {-1: [5], 0: [0, 2, 1], 1: [3, 4]}


def test_cluster_stats_hand_case():
    from imgclust.report.summary import cluster_stats

    X = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    rows = cluster_stats(X, [0, 0, 1, 1], [0.0, 0.0, 0.5, np.nan])  # plain lists are fine too
    assert [(r["cluster"], r["size"]) for r in rows] == [(0, 2), (1, 2)]
    assert rows[0]["cohesion"] == pytest.approx(1.0) and rows[0]["mean_distance"] == 0.0
    # cluster 1: unit vectors (0,1) and (1,1)/sqrt2; centroid direction at 67.5 degrees -> cos 22.5 deg each
    assert rows[1]["cohesion"] == pytest.approx(np.cos(np.pi / 8), abs=1e-6)
    assert rows[1]["mean_distance"] == 0.5  # NaN ignored
