"""TEMI's extra backbones through transformers' native classes: ConvNeXt, ResNet-50, MAE, MSN.

Tiny random checkpoints of each (``backbone_fixtures``) are saved like the hub ones and loaded
through imgclust's real path: ``hf:DIR`` and the registered spec with its weights pointed at DIR.
Each vector is checked against the model's own forward pass with the documented pooling.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from backbone_fixtures import BACKBONE_MAKERS, IMAGENET_MEAN, IMAGENET_STD
from imgclust.encoders import ENCODERS, create_encoder
from imgclust.errors import ImgclustError

pytestmark = pytest.mark.usefixtures("limit_threads")

HUB = {"convnext-b": "facebook/convnext-base-224", "resnet-50": "microsoft/resnet-50",
       "vit-mae-b": "facebook/vit-mae-base", "vit-msn-b": "facebook/vit-msn-base"}
DIMS = {"convnext-b": 1024, "resnet-50": 2048, "vit-mae-b": 768, "vit-msn-b": 768}
TINY_DIMS = {"convnext-b": 16, "resnet-50": 32, "vit-mae-b": 32, "vit-msn-b": 32}
POOLING = {"convnext-b": "pooler", "resnet-50": "pooler", "vit-mae-b": "mean", "vit-msn-b": "cls"}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {name: make(root / name) for name, make in BACKBONE_MAKERS.items()}


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


def _reference(name: str, path) -> np.ndarray:
    """The vector computed by hand from the native model class and its saved processor."""
    import torch
    import transformers

    cls = {"convnext-b": "ConvNextModel", "resnet-50": "ResNetModel", "vit-mae-b": "ViTMAEModel",
           "vit-msn-b": "ViTMSNModel"}[name]
    kw = {"mask_ratio": 0.0} if name == "vit-mae-b" else {}
    model = getattr(transformers, cls).from_pretrained(path, **kw).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(path, backend="pil")
    with torch.inference_mode():
        out = model(pixel_values=proc(images=_images(), return_tensors="pt")["pixel_values"])
    if name == "vit-mae-b":
        assert out.last_hidden_state.shape[1] == model.config.image_size ** 2 // model.config.patch_size ** 2 + 1
        v = out.last_hidden_state[:, 1:].mean(1)
    elif name == "vit-msn-b":
        v = out.last_hidden_state[:, 0]
    else:
        v = out.pooler_output.flatten(1)
    v = v.numpy()
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("name", list(BACKBONE_MAKERS))
def test_registered_spec(name):
    spec = ENCODERS[name]
    assert spec.weights == HUB[name] and spec.dim == DIMS[name] and spec.pooling == POOLING[name]
    assert spec.image_size == 224 and spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD
    assert not spec.has_text


@pytest.mark.parametrize("name", list(BACKBONE_MAKERS))
def test_registered_name_with_local_weights_matches_the_native_model(name, tiny_dirs):
    spec = dataclasses.replace(ENCODERS[name], weights=str(tiny_dirs[name]))
    enc = create_encoder(spec, device="cpu")
    vecs = enc.encode_images(_images())
    assert vecs.shape == (3, TINY_DIMS[name]) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vecs, _reference(name, tiny_dirs[name]), atol=2e-5)
    assert enc.pooling == POOLING[name]
    # Preprocessing is the checkpoint's own: its processor's mean/std and crop size.
    assert enc.spec.image_size == 32 and enc.spec.mean == IMAGENET_MEAN and enc.spec.std == IMAGENET_STD
    np.testing.assert_array_equal(vecs, enc.encode_images(_images()))  # MAE: no random masking left
    assert enc.fingerprint() == spec.fingerprint()


@pytest.mark.parametrize("name", list(BACKBONE_MAKERS))
def test_hf_dir_picks_the_same_pooling(name, tiny_dirs):
    enc = create_encoder(f"hf:{tiny_dirs[name]}", device="cpu")
    assert enc.pooling == POOLING[name]
    np.testing.assert_allclose(enc.encode_images(_images()), _reference(name, tiny_dirs[name]), atol=2e-5)


def test_registered_backbone_rejects_another_model_type(tiny_dirs):
    spec = dataclasses.replace(ENCODERS["resnet-50"], weights=str(tiny_dirs["convnext-b"]))
    with pytest.raises(ImgclustError, match="hf:"):
        create_encoder(spec, device="cpu")

