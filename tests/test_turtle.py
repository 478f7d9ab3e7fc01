"""TURTLE on several representation spaces, and multi-encoder runs (caching, row alignment)."""

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from imgclust.cluster import TURTLE, KMeans, make_clusterer  # noqa: E402
from imgclust.metrics import cluster_accuracy as _acc  # noqa: E402


def cluster_accuracy(y, labels):
    return _acc(y, labels)[0]


def two_blind_spaces(n=150, d=12, seed=0):
    """4 true clusters; space A merges clusters 0 and 1, space B merges 2 and 3.

    In each space alone the merged pair is one Gaussian (indistinguishable); the pair of spaces
    tells every cluster apart.
    """
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(4), n)
    ma, mb = rng.randn(4, d) * 3, rng.randn(4, d) * 3
    ma[1], mb[3] = ma[0], mb[2]
    a = ma[y] + rng.randn(len(y), d)
    b = mb[y] + rng.randn(len(y), d)
    return a.astype(np.float32), b.astype(np.float32), y


@pytest.fixture(autouse=True)
def one_thread(limit_threads):
    """Single-threaded torch: these steps are tiny, and OpenMP spin-waiting on a busy box costs 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAST = dict(n_steps=120, n_heads=2, batch_size=512)


def test_turtle_recovers_what_no_single_space_can():
    a, b, y = two_blind_spaces()
    for space in (a, b):
        single = KMeans(n_clusters=4, random_state=0).fit(space).labels_
        assert cluster_accuracy(y, single) < 0.8  # a merged pair costs a quarter of the points
    both = TURTLE(n_clusters=4, spaces=[a.shape[1], b.shape[1]], random_state=0, **FAST).fit(np.hstack([a, b]))
    assert cluster_accuracy(y, both.labels_) > 0.99
    assert both.probabilities_.shape == (len(y), 4)
    np.testing.assert_allclose(both.probabilities_.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(both.predict(np.hstack([a, b])), both.labels_)
    assert both.loss_history_.shape == (FAST["n_steps"], FAST["n_heads"])
    assert both.objective_ == both.head_objectives_.min()


def test_turtle_is_deterministic_per_seed_and_takes_a_list_of_spaces():
    a, b, _ = two_blind_spaces(n=60)
    params = dict(n_clusters=4, n_steps=30, n_heads=2, batch_size=128)
    one = TURTLE(spaces=[12, 12], random_state=3, **params).fit(np.hstack([a, b]))
    two = TURTLE(random_state=3, **params).fit([a, b])
    np.testing.assert_array_equal(one.labels_, two.labels_)
    np.testing.assert_allclose(one.loss_history_, two.loss_history_)
    other = TURTLE(random_state=4, **params).fit([a, b])
    assert not np.allclose(one.loss_history_, other.loss_history_)


def test_turtle_rejects_bad_spaces_and_k():
    a, b, _ = two_blind_spaces(n=20)
    with pytest.raises(ValueError, match="add up"):
        TURTLE(n_clusters=4, spaces=[5, 5]).fit(np.hstack([a, b]))
    with pytest.raises(ValueError, match="rows"):
        TURTLE(n_clusters=4).fit([a, b[:10]])
    with pytest.raises(ValueError, match="n_clusters"):
        TURTLE(n_clusters=1).fit(a)
    assert isinstance(make_clusterer("turtle", n_clusters=3), TURTLE)


# ----------------------------------------------------------------------------- multi-encoder


@pytest.fixture()
def folder(tmp_path):
    from PIL import Image

    rng = np.random.RandomState(0)
    root = tmp_path / "imgs"
    for c, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(6):
            arr = np.clip(np.asarray(colour) + rng.randint(-25, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")
    (root / "class0" / "broken.png").write_bytes(b"not an image")
    return root


def _two_pixel_specs():
    from imgclust.encoders import get_spec

    base = get_spec("pixels")
    return [dataclasses.replace(base, name="pixels8", image_size=8, dim=8 * 8 * 3),
            dataclasses.replace(base, name="pixels4", image_size=4, dim=4 * 4 * 3)]


def test_multi_encoder_caches_each_encoder_and_aligns_rows(folder, tmp_path):
    from imgclust.api import cluster_images
    from imgclust.pipeline.embed import embed_images
    from imgclust.pipeline.store import EmbeddingStore

    specs = _two_pixel_specs()
    cache = tmp_path / "cache"
    res = cluster_images([str(folder)], encoder=specs, method="turtle", k=2, labels="folder", reduce="none",
                         map="pca", cache_dir=cache, out=tmp_path / "run", plots=False, report=False,
                         method_params=dict(n_steps=40, n_heads=2))
    assert res.embeddings.shape == (12, 8 * 8 * 3 + 4 * 4 * 3)
    assert [s["path"] for s in res.metrics["skipped"]] == [str(folder / "class0" / "broken.png")]
    assert res.metrics["external"]["acc"] == 1.0
    # Each encoder has its own store (its fingerprint), holding one row per usable image.
    fps = sorted(p.name for p in (cache / "embeddings").iterdir())
    assert len(fps) == 2
    for spec in specs:
        from imgclust.encoders import create_encoder

        enc = create_encoder(spec)
        assert enc.fingerprint() in fps
        assert len(EmbeddingStore(cache, enc.fingerprint(), enc.dim)) == 12
        # Rows line up by image: each block equals that encoder's own single-encoder vectors.
        alone = embed_images(res.records, encoder=spec, cache_dir=cache)
        assert alone.n_encoded == 0  # served from the cache written by the multi-encoder run
        lo = 0 if spec.name == "pixels8" else 8 * 8 * 3
        np.testing.assert_array_equal(res.embeddings[:, lo:lo + spec.dim], alone.embeddings)
    cfg = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert cfg["encoder"] == "pixels8,pixels4" and cfg["spaces"] == [192, 48]
    assert [e["name"] for e in cfg["encoders"]] == ["pixels8", "pixels4"]


def test_recluster_keeps_the_spaces(folder, tmp_path):
    from imgclust.api import cluster_images, recluster

    cluster_images([str(folder)], encoder=_two_pixel_specs(), k=2, labels="folder", reduce="none", map="pca",
                   cache_dir=tmp_path / "c", out=tmp_path / "run", plots=False, report=False)
    again = recluster(tmp_path / "run", method="turtle", k=2, method_params=dict(n_steps=30, n_heads=1))
    assert again.model.space_dims_ == [192, 48]
    assert again.config["spaces"] == [192, 48]


def test_encoder_list_parsing():
    from imgclust.errors import ImgclustError
    from imgclust.pipeline.multi import encoder_names

    assert encoder_names("efficientnet-lite0") is None
    assert encoder_names("efficientnet-lite0, efficientnet-lite1") == ["efficientnet-lite0", "efficientnet-lite1"]
    with pytest.raises(ImgclustError, match="twice"):
        encoder_names("pixels,pixels")
