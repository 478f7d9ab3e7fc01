"""HFEncoder on tiny random checkpoints saved like a user's local dirs: offline, a few seconds."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from hf_fixtures import make_tiny_clip, make_tiny_dinov2, make_tiny_siglip, make_tiny_vit  # noqa: E402
from imgclust.encoders import ENCODERS, create_encoder, encoder_info, get_spec  # noqa: E402
from imgclust.errors import ImgclustError  # noqa: E402

MAKERS = {"clip": make_tiny_clip, "siglip": make_tiny_siglip, "vit": make_tiny_vit, "dinov2": make_tiny_dinov2}
TEXT = {"clip": True, "siglip": True, "vit": False, "dinov2": False}
# A registered name of each family, to load through the same code path with local weights.
REGISTERED = {"clip": "clip-vit-b-32", "siglip": "siglip-b-16", "vit": "vit-b-16-in21k", "dinov2": "dinov2-s"}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_hf")
    return {kind: make(root / kind) for kind, make in MAKERS.items()}


@pytest.fixture(scope="module")
def encoders(tiny_dirs):
    return {kind: create_encoder("hf:" + str(path), device="cpu") for kind, path in tiny_dirs.items()}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Nothing in this file may touch the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8))
    gray = Image.fromarray(rng.integers(0, 256, (80, 50), dtype=np.uint8), mode="L").convert("RGB")
    red = Image.new("RGB", (32, 32), (220, 20, 20))
    blue = Image.new("RGB", (100, 70), (20, 20, 220))
    return [noise, gray, red, blue]


def _expected_dim(path: Path) -> int:
    config = json.loads((path / "config.json").read_text())
    if "projection_dim" in config:  # CLIP: the projected embedding
        return config["projection_dim"]
    return config.get("vision_config", config)["hidden_size"]


def test_fixture_is_importable_from_tests():
    import hf_fixtures

    assert callable(hf_fixtures.make_tiny_clip)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_encode_images_unit_norm_deterministic(kind, encoders, tiny_dirs):
    enc = encoders[kind]
    images = _images()
    a = enc.encode_images(images)
    b = enc.encode_images(images)
    dim = _expected_dim(tiny_dirs[kind])
    assert a.dtype == np.float32 and a.shape == (len(images), dim)
    assert enc.dim == dim
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # Different images -> different vectors (no collapse, no shared constant output).
    sims = a @ a.T
    assert np.all(sims[~np.eye(len(images), dtype=bool)] < 1 - 1e-4)
    assert enc.encode_images([]).shape == (0, dim)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_pooling_and_preprocess(kind, encoders):
    import torch

    enc = encoders[kind]
    assert enc.pooling == ("projection" if TEXT[kind] else "cls")
    assert enc.spec.pooling == enc.pooling
    pixels = enc.preprocess(_images()[:2])
    assert isinstance(pixels, torch.Tensor) and pixels.shape[:2] == (2, 3)
    assert pixels.shape[-1] == enc.spec.image_size
    # image_features keeps the autograd graph for Grad-CAM / fine-tuning.
    pixels.requires_grad_(True)
    feats = enc.image_features(pixels)
    assert feats.shape == (2, enc.dim) and feats.requires_grad
    feats.sum().backward()
    assert pixels.grad is not None


@pytest.mark.parametrize("kind", list(MAKERS))
def test_text_tower(kind, encoders):
    enc = encoders[kind]
    assert enc.has_text is TEXT[kind]
    if not TEXT[kind]:
        assert enc.tokenizer is None
        with pytest.raises(ImgclustError):
            enc.encode_text(["a red circle"])
        return
    assert enc.tokenizer is not None
    t = enc.encode_text(["a red circle", "a blue square"])
    assert t.dtype == np.float32 and t.shape == (2, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert float(t[0] @ t[1]) < 1 - 1e-4
    np.testing.assert_allclose(enc.encode_text(["a red circle"])[0], t[0], atol=1e-5)
    # Longer than the model's positions: truncated, not an error.
    long = enc.encode_text([" ".join(["red"] * 200)])
    assert long.shape == (1, enc.dim)


def test_clip_text_pools_at_end_token(encoders, tiny_dirs):
    enc = encoders["clip"]
    config = json.loads((tiny_dirs["clip"] / "config.json").read_text())
    assert config["text_config"]["eos_token_id"] == enc.tokenizer.eos_token_id != 2
    ids = enc.tokenizer(["a red circle"])["input_ids"][0]
    assert ids[0] == enc.tokenizer.bos_token_id and ids[-1] == enc.tokenizer.eos_token_id


def test_fingerprint_stable_across_loads(encoders, tiny_dirs):
    again = create_encoder("hf:" + str(tiny_dirs["vit"]), device="cpu")
    assert again.fingerprint() == encoders["vit"].fingerprint()
    # Keyed on the spec as requested, not on the dims filled in after loading.
    assert again.fingerprint() == get_spec("hf:" + str(tiny_dirs["vit"])).fingerprint()
    assert encoders["vit"].fingerprint() != encoders["dinov2"].fingerprint()


def test_device_cpu(encoders):
    enc = encoders["clip"]
    assert enc.device == "cpu"
    assert next(enc.model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("kind", list(MAKERS))
def test_registered_family_with_local_weights(kind, tiny_dirs):
    spec = dataclasses.replace(ENCODERS[REGISTERED[kind]], weights=str(tiny_dirs[kind]))
    enc = create_encoder(spec, device="cpu")
    vecs = enc.encode_images(_images()[:2])
    assert vecs.shape == (2, _expected_dim(tiny_dirs[kind]))
    assert enc.has_text is TEXT[kind]
    assert enc.fingerprint() == spec.fingerprint()


def test_registered_family_rejects_other_model_type(tiny_dirs):
    spec = dataclasses.replace(ENCODERS["clip-vit-b-32"], weights=str(tiny_dirs["dinov2"]))
    with pytest.raises(ImgclustError, match="hf:"):
        create_encoder(spec, device="cpu")


def test_registered_name_loads_from_hf_cache(tmp_path, monkeypatch):
    """clip-vit-b-32 itself, with its hub id resolved from a (fake) local HF cache."""
    import huggingface_hub.constants as hub_constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--openai--clip-vit-base-patch32"
    make_tiny_clip(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    assert encoder_info(ENCODERS["clip-vit-b-32"])["available"]
    enc = create_encoder("clip-vit-b-32", device="cpu")
    assert enc.encode_images(_images()[:2]).shape == (2, 32)
    assert enc.encode_text(["a photo of a cat"]).shape == (1, 32)
    assert enc.fingerprint() == ENCODERS["clip-vit-b-32"].fingerprint()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["clip-vit-b-32", "dinov2-s", "hf:nobody-xyz/no-such-model"])
def test_missing_weights_offline_fail_fast(name, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    with pytest.raises(ImgclustError) as info:
        create_encoder(name, device="cpu")
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "\n" not in message
    assert "not available offline" in message and "hf:" in message
    assert get_spec(name).weights in message


@pytest.mark.timeout(60)
def test_missing_local_dir_fails_fast(tmp_path):
    with pytest.raises(ImgclustError, match="not found"):
        create_encoder("hf:" + str(tmp_path / "no" / "such" / "dir"), device="cpu")


@pytest.mark.timeout(60)
def test_dir_without_checkpoint_fails_clearly(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ImgclustError, match="cannot load"):
        create_encoder("hf:" + str(tmp_path), device="cpu")


def test_siglip_pads_to_max_length_without_mask(encoders):
    batch = encoders["siglip"]._tokenize(["a red circle", "a photo of a small blue square"])
    assert set(batch) == {"input_ids"} and batch["input_ids"].shape == (2, 16)


def test_unknown_model_type_uses_pooler(tmp_path):
    """An ``hf:`` checkpoint of a type outside POOLING: no get_image_features -> pooler_output."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from hf_fixtures import CLIP_MEAN, CLIP_STD, image_processor_class

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPVisionModel(config)
    model.save_pretrained(tmp_path)
    image_processor_class("CLIPImageProcessor")(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(tmp_path)

    enc = create_encoder("hf:" + str(tmp_path), device="cpu")
    assert enc.model_type == "clip_vision_model" and enc.pooling == "pooler"
    vecs = enc.encode_images(_images())
    assert vecs.shape == (4, 32) and not enc.has_text
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
