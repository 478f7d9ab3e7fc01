"""Inference runtimes: ONNX Runtime and OpenVINO give torch's vectors, one export, one fingerprint.

Parity is checked on real photos (scikit-image's bundled ones) through the public factory, so
the exported graph, its preprocessing and the runtime's threads are what a user gets.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgclust.encoders import create_encoder
from imgclust.encoders import runtime as rt
from imgclust.errors import ImgclustError, MissingDependencyError

pytestmark = pytest.mark.usefixtures("limit_threads")

EXPORTED = [r for r in ("onnx", "openvino") if rt.runtime_available(r)]


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry"]
    return [Image.fromarray(getattr(data, n)()).convert("RGB") for n in names]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.fixture(scope="module")
def torch_vectors(photos):
    enc = create_encoder("efficientnet-lite0", device="cpu", runtime="torch")
    assert enc.runtime == "torch"
    return enc.fingerprint(), enc.encode_images(photos)


@pytest.mark.parametrize("runtime", EXPORTED)
def test_exported_runtime_matches_torch_on_real_photos(runtime, photos, torch_vectors, model_cache):
    fingerprint, ref = torch_vectors
    enc = create_encoder("efficientnet-lite0", device="cpu", runtime=runtime, cache_dir=model_cache)
    assert enc.runtime == runtime
    vec = enc.encode_images(photos)
    assert vec.shape == ref.shape == (len(photos), 1280)
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    assert float(np.abs(vec - ref).max()) < 1e-3
    # Vectors agree, so the store key does not depend on who computed them.
    assert enc.fingerprint() == fingerprint
    # Different images really give different vectors (the parity is not two constant outputs).
    assert float(np.abs(vec[0] - vec[1]).max()) > 1e-2
    # A batch size the export never saw (dynamic batch axis).
    assert np.abs(enc.encode_images(photos[:1]) - ref[:1]).max() < 1e-3


@pytest.mark.skipif(not EXPORTED, reason="no exported runtime installed")
def test_export_is_written_once_atomically(model_cache):
    first = create_encoder("efficientnet-lite0", device="cpu", runtime=EXPORTED[0], cache_dir=model_cache)
    path = rt.onnx_path(model_cache, first.fingerprint())
    assert path.is_file() and path.stat().st_size > 1_000_000
    mtime = path.stat().st_mtime_ns
    create_encoder("efficientnet-lite0", device="cpu", runtime=EXPORTED[-1], cache_dir=model_cache)
    assert path.stat().st_mtime_ns == mtime  # reused, not re-exported
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


@pytest.mark.skipif(not EXPORTED, reason="no exported runtime installed")
def test_cache_is_shared_across_runtimes(tmp_path, model_cache):
    from conftest import write_image_folder
    from imgclust.pipeline.embed import embed_images

    root = tmp_path / "imgs"
    write_image_folder(root, per_class=3)
    enc = create_encoder("efficientnet-lite0", device="cpu", runtime=EXPORTED[0], cache_dir=model_cache)
    first = embed_images(str(root), encoder=enc, cache_dir=tmp_path / "c")
    assert first.n_encoded == len(first.records) > 0
    again = embed_images(str(root), encoder="efficientnet-lite0", device="cpu", runtime="torch",
                         cache_dir=tmp_path / "c")
    assert again.n_encoded == 0 and again.n_cached == len(first.records)


def test_auto_picks_torch_on_gpu_and_fastest_installed_on_cpu(monkeypatch):
    assert rt.resolve_runtime("auto", "cuda") == "torch"
    assert rt.resolve_runtime("auto", "mps") == "torch"
    expected = next((r for r in rt.CPU_PREFERENCE if rt.runtime_available(r)), "torch")
    assert rt.resolve_runtime("auto", "cpu") == expected
    monkeypatch.setattr(rt, "runtime_available", lambda r: r in ("torch", "onnx"))
    assert rt.resolve_runtime("auto", "cpu") == "onnx"
    monkeypatch.setattr(rt, "runtime_available", lambda r: r in ("torch", "openvino"))
    assert rt.resolve_runtime("auto", "cpu") == "openvino"
    monkeypatch.setattr(rt, "runtime_available", lambda r: r == "torch")
    assert rt.resolve_runtime(None, "cpu") == "torch"
    assert rt.resolve_runtime("TORCH", "cpu") == "torch"


def test_bad_runtime_choices_are_user_errors():
    with pytest.raises(ImgclustError, match="unknown runtime 'tensorrt'"):
        rt.resolve_runtime("tensorrt", "cpu")
    with pytest.raises(ImgclustError, match="runs on CPU only"):
        rt.resolve_runtime("onnx", "cuda")
    with pytest.raises(ImgclustError, match="efficientnet encoders only"):
        create_encoder("pixels", runtime="onnx")
    assert create_encoder("pixels", runtime="auto").runtime == "torch"


def test_missing_runtime_names_the_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'imgclust\[openvino\]'"):
        rt.resolve_runtime("openvino", "cpu")


def test_cli_missing_runtime_is_one_line(monkeypatch, tmp_path):
    from conftest import write_image_folder
    from imgclust.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    write_image_folder(tmp_path / "imgs", per_class=2)
    res = CliRunner().invoke(app, ["run", str(tmp_path / "imgs"), "--runtime", "onnx", "--k", "2", "--quiet",
                                   "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == ["error: --runtime onnx needs onnxruntime: pip install 'imgclust[onnx]'  (onnxruntime + onnx)"]


def test_batch_size_defaults_to_the_encoders_and_run_json_records_runtime(tmp_path):
    from conftest import write_image_folder
    from imgclust.api import cluster_images

    enc = create_encoder("pixels")
    assert enc.default_batch_size == 64
    enc.device = "cuda"  # what a GPU encoder reports: bigger batches keep the device busy
    assert enc.default_batch_size == 256
    write_image_folder(tmp_path / "imgs", per_class=3)
    res = cluster_images(str(tmp_path / "imgs"), encoder="pixels", k=3, map="pca", cache_dir=tmp_path / "c",
                         out=tmp_path / "run", plots=False, report=False)
    import json

    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert config["batch_size"] == 64 and config["runtime"] == "torch"
    assert res.timings["n_encoded"] == 9


def test_gpu_copy_path_pins_memory_and_is_async():
    from imgclust.encoders.base import to_device

    calls = []

    class FakeTensor:
        def pin_memory(self):
            calls.append("pin")
            return self

        def to(self, device, non_blocking=False):
            calls.append((device, non_blocking))
            return self

    to_device(FakeTensor(), "cuda:0")
    assert calls == ["pin", ("cuda:0", True)]
    calls.clear()
    to_device(FakeTensor(), "cpu")
    assert calls == [("cpu", False)]


def test_hf_encoder_batches_go_through_the_device_copy(tmp_path, monkeypatch):
    from hf_fixtures import make_tiny_vit
    from imgclust.encoders import hf

    seen = []
    real = hf.to_device
    monkeypatch.setattr(hf, "to_device", lambda t, d: seen.append((tuple(t.shape), d)) or real(t, d))
    enc = create_encoder(f"hf:{make_tiny_vit(tmp_path / 'vit')}", device="cpu", runtime="auto")
    assert enc.runtime == "torch" and enc.default_batch_size == 64
    vec = enc.encode_images([Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (30, 40), (10, 10, 200))])
    assert vec.shape[0] == 2 and np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    assert seen[-1] == ((2, 3, 32, 32), "cpu")


def test_intra_op_threads_follow_imgclust_threads(monkeypatch):
    from imgclust.encoders.runtime import intra_op_threads

    monkeypatch.setenv("IMGCLUST_THREADS", "1")
    assert intra_op_threads() == 1
    monkeypatch.setenv("IMGCLUST_THREADS", "junk")  # ignored: the cores this process may use
    assert intra_op_threads() == len(os.sched_getaffinity(0))


def test_ray_actor_layout_fills_the_cores_once():
    from imgclust.pipeline._ray import actor_layout

    assert actor_layout(2) == (2, 1)  # default: one single-threaded actor per core
    assert actor_layout(2, 1) == (1, 2)
    assert actor_layout(8, 3) == (3, 2)
