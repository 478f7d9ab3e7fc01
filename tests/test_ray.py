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
