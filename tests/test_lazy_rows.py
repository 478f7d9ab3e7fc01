"""The store's lazy multi-shard view: rows gathered on demand, never the whole array at once."""

from __future__ import annotations

import numpy as np
import pytest

from imgclust import metrics
from imgclust._rows import ShardRows
from imgclust.cluster import KMeans, classic
from imgclust.pipeline import store as store_mod
from imgclust.pipeline.store import EmbeddingStore


class NoFullCopy(ShardRows):
    """A ShardRows that fails when converted whole, and records the largest single read."""

    largest = 0

    def __getitem__(self, key):
        out = super().__getitem__(key)
        NoFullCopy.largest = max(NoFullCopy.largest, len(np.atleast_2d(out)))
        return out

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole array was materialised")


def _blobs(n=3000, d=8, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((6, d)).astype(np.float32) * 4
    return (c[rng.integers(0, 6, n)] + rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)


@pytest.fixture
def sharded(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "RUN_REF_ROWS", 1000)
    X = _blobs()
    st = EmbeddingStore(tmp_path, "fp", X.shape[1], shard_rows=500)
    for s in range(0, len(X), 600):  # five shards
        st.add([f"h{i}" for i in range(s, min(s + 600, len(X)))], X[s:s + 600])
    return st, X


def test_vectors_of_many_shards_is_lazy_and_equal(sharded):
    st, X = sharded
    V = st.vectors()
    assert isinstance(V, ShardRows) and len(V.blocks) == 5 and V.shape == X.shape
    np.testing.assert_array_equal(np.asarray(V), X)
    np.testing.assert_array_equal(V[650:1500], X[650:1500])
    idx = np.array([2999, 0, 701, 701, 1400])
    np.testing.assert_array_equal(V[idx], X[idx])
    mask = X[:, 0] > 0
    np.testing.assert_array_equal(V[mask], X[mask])
    np.testing.assert_array_equal(V[idx, 2:4], X[idx, 2:4])
    np.testing.assert_array_equal(V[5], X[5])


def test_large_path_kmeans_and_scores_read_in_batches(sharded, monkeypatch):
    st, X = sharded
    monkeypatch.setattr(classic, "KMEANS_FULL_ROWS", 1000)
    V = st.vectors()
    lazy = NoFullCopy(V.blocks, V.starts, V.rows)
    from imgclust.cluster import _validation

    monkeypatch.setattr(_validation, "ASSIGN_BATCH", 512)
    from imgclust import limits
    from imgclust.cluster import _scale

    monkeypatch.setattr(limits, "ASSIGN_BATCH", 512)  # _scale reads it at call time
    monkeypatch.setattr(_scale, "KMEANS_FULL_ROWS", 1000)  # trains on a 1000-row sample of the 3000
    km = KMeans(n_clusters=6, random_state=0).fit(lazy)  # never np.asarray(lazy)
    ref = KMeans(n_clusters=6, random_state=0).fit(X)
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    assert NoFullCopy.largest < len(X)
    NoFullCopy.largest = 0
    monkeypatch.setattr(metrics, "SCORE_BATCH", 700)
    got = metrics.internal_scores(lazy, km.labels_, sample_size=500, max_rows=1000)
    assert NoFullCopy.largest < len(X)
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    assert got["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(X, km.labels_), rel=1e-5)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_score(X, km.labels_), rel=1e-5)
    assert -1 <= got["silhouette"] <= 1


def test_small_store_still_returns_an_array(tmp_path):
    X = _blobs(300)
    st = EmbeddingStore(tmp_path, "fp", X.shape[1], shard_rows=100)
    st.add([f"h{i}" for i in range(150)], X[:150])
    st.add([f"h{i}" for i in range(150, 300)], X[150:])
    V = st.vectors()
    assert isinstance(V, np.ndarray)
    np.testing.assert_array_equal(V, X)


@pytest.mark.parametrize("head", ["scan", "temi"])
def test_heads_train_in_minibatches_over_the_shards(sharded, monkeypatch, head):
    """SCAN/TEMI never materialise the input: every read is one batch, and results equal the in-memory fit."""
    from imgclust import knn as knn_mod
    from imgclust.cluster import _validation
    from imgclust.cluster.heads import _source
    from imgclust.cluster.heads.scan import SCAN
    from imgclust.cluster.heads.temi import TEMI

    st, X = sharded
    for mod, name in ((_source, "READ_BATCH"), (knn_mod, "ASSIGN_BATCH"), (_validation, "ASSIGN_BATCH")):
        monkeypatch.setattr(mod, name, 128)
    V = st.vectors()
    lazy = NoFullCopy(V.blocks, V.starts, V.rows)
    make = {"scan": lambda: SCAN(n_clusters=6, n_heads=2, epochs=3, min_steps=0, batch_size=128,
                                 self_label_epochs=2, self_label_batch_size=100, threshold=0.5, random_state=3),
            "temi": lambda: TEMI(n_clusters=6, n_heads=2, epochs=3, min_steps=0, batch_size=128, random_state=3)}[head]
    NoFullCopy.largest = 0
    got = make().fit(lazy)
    assert 0 < NoFullCopy.largest <= 128  # batches only (a full read would be 3000 rows, or raise)
    ref = make().fit(X)
    np.testing.assert_array_equal(got.neighbors_, ref.neighbors_)
    np.testing.assert_array_equal(got.probabilities_, ref.probabilities_)
    np.testing.assert_array_equal(got.loss_history_, ref.loss_history_)
    np.testing.assert_array_equal(got.predict_proba(lazy), ref.probabilities_)
    assert len(np.unique(got.labels_)) > 1
