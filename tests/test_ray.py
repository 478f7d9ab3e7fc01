"""The Ray Data embed engine: same vectors and clusters as the local engine; a killed worker loses nothing."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from conftest import write_random_images

ray = pytest.importorskip("ray")
# Starting Ray and its actors takes 50-180 s on the shared 2-core machine: slow, and run in CI.
pytestmark = [pytest.mark.ray]


@pytest.fixture(scope="module")
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors can rebuild the test encoder
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class _DiesOnce:
    """The pixels encoder, except that the first call after ``marker`` is absent kills its worker process."""

    def __init__(self, marker: str):
        from imgclust.encoders import create_encoder

        self.inner = create_encoder("pixels", device="cpu")
        self.marker = marker
        self.name, self.dim, self.spec, self.device = self.inner.name, self.inner.dim, self.inner.spec, "cpu"

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def encode_images(self, images):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # the actor process dies mid-job, as a pre-empted node would
        return self.inner.encode_images(images)


@pytest.mark.slow
def test_ray_engine_gives_the_local_vectors_and_clusters(local_ray, tmp_path):
    from imgclust.analyze import cluster_embeddings
    from imgclust.pipeline.embed import embed_images

    write_random_images(tmp_path / "imgs", 24)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not an image")
    loc = embed_images([str(tmp_path / "imgs")], encoder="pixels", cache_dir=tmp_path / "c1", batch_size=5)
    ray_ = embed_images([str(tmp_path / "imgs")], encoder="pixels", cache_dir=tmp_path / "c2", batch_size=5,
                        engine="ray")
    assert ray_.n_encoded == loc.n_encoded == 24
    assert [r.path for r in ray_.records] == [r.path for r in loc.records]
    assert [s["path"] for s in ray_.skipped] == [s["path"] for s in loc.skipped] and len(loc.skipped) == 1
    np.testing.assert_array_equal(ray_.embeddings, loc.embeddings)
    labels = [cluster_embeddings(e.embeddings, reduce="none", map="pca", k=3).labels for e in (loc, ray_)]
    np.testing.assert_array_equal(*labels)
    again = embed_images([str(tmp_path / "imgs")], encoder="pixels", cache_dir=tmp_path / "c2", engine="ray")
    assert again.n_encoded == 0 and again.n_cached == 24  # the Ray run filled the same store


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(local_ray, tmp_path):
    from imgclust.pipeline.embed import embed_records, open_store
    from imgclust.pipeline.sources import discover

    write_random_images(tmp_path / "imgs", 20)
    records = discover([str(tmp_path / "imgs")])
    enc = _DiesOnce(str(tmp_path / "died"))
    store = open_store(enc.inner, tmp_path / "cache")
    res = embed_records(records, enc, store=store, batch_size=4, progress=False, engine="ray")
    assert os.path.exists(tmp_path / "died")  # a worker really was killed
    assert res.n_encoded == 20 and not res.skipped
    np.testing.assert_array_equal(res.embeddings, enc.inner.encode_images(
        [__import__("imgclust.pipeline.sources", fromlist=["load_image"]).load_image(r.path) for r in records]))
    assert len(open_store(enc.inner, tmp_path / "cache")) == 20


@pytest.mark.slow
def test_large_kmeans_assigns_on_ray_with_the_local_labels(local_ray, tmp_path, monkeypatch):
    """The large-N path (threshold lowered): centroids from the sample, every row assigned on Ray actors."""
    from imgclust import limits
    from imgclust.cluster import _scale, classic
    from imgclust.cluster._scale_ray import _source, assign_batches_ray

    monkeypatch.setattr(classic, "KMEANS_FULL_ROWS", 300)
    monkeypatch.setattr(_scale, "KMEANS_FULL_ROWS", 300)
    monkeypatch.setattr(limits, "ASSIGN_BATCH", 128)  # several blocks, the last one short
    rng = np.random.default_rng(0)
    centers = np.eye(12, dtype=np.float32)[:5] * 3
    X = (centers[rng.integers(0, 5, 1000)] + rng.standard_normal((1000, 12)).astype(np.float32))
    np.save(tmp_path / "x.npy", X)
    X_map = np.load(tmp_path / "x.npy", mmap_mode="r")  # as the store's shard: reopened by the actors
    assert _source(X_map)["file"] == str(tmp_path / "x.npy") and "array" in _source(X_map[::2])
    loc = classic.KMeans(n_clusters=5, max_points_per_centroid=60, random_state=0).fit(X)
    ray_ = classic.KMeans(n_clusters=5, max_points_per_centroid=60, random_state=0, engine="ray").fit(X_map)
    np.testing.assert_array_equal(ray_.cluster_centers_, loc.cluster_centers_)  # same sample, same fit
    np.testing.assert_array_equal(ray_.labels_, loc.labels_)
    np.testing.assert_allclose(ray_.nearest_sq_distances_, loc.nearest_sq_distances_, rtol=1e-5, atol=1e-5)
    assert len(np.unique(loc.labels_)) == 5
    # Rows in memory (e.g. PCA output) go through the object store; shuffled centres change every label.
    lab, d2 = assign_batches_ray(X[::-1], loc.cluster_centers_[::-1], k=2)
    ref_lab, ref_d2 = _scale.assign_batches(X[::-1], loc.cluster_centers_[::-1], k=2)
    np.testing.assert_array_equal(lab, ref_lab)
    np.testing.assert_allclose(d2, ref_d2, rtol=1e-5, atol=1e-5)

