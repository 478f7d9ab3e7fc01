"""Contrastive fine-tuning: a tiny random CLIP really learns captioned coloured shapes, offline.

The session fixture (tests/language_fixtures.py) fine-tunes once and is shared with the naming
and search tests.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from hf_fixtures import make_tiny_clip, make_tiny_siglip, make_tiny_vit  # noqa: E402
from imgclust.errors import ImgclustError  # noqa: E402
from imgclust.language.finetune import finetune_clip, read_pairs, retrieval_recall, select_trainable  # noqa: E402
from language_fixtures import CLASSES, finetuned_shapes, make_shapes, torch_threads  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return finetuned_shapes(tmp_path_factory)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """24 captioned shapes and a fresh tiny CLIP, for quick option tests."""
    root = tmp_path_factory.mktemp("small")
    make_shapes(root / "pairs", per_class=3, seed=5)
    return {"pairs": root / "pairs" / "pairs.csv", "clip": make_tiny_clip(root / "clip", seed=1), "root": root}


def _weights(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.timeout(300)
def test_finetuned_tiny_clip_retrieves_held_out_pairs(shapes):
    history = shapes["history"]
    best = history["best"]
    # Held-out validation pairs (20%, never trained on): recall@1 both ways.
    assert best["i2t_r1"] >= 0.9 and best["t2i_r1"] >= 0.9, best
    assert best["i2t_r5"] == 1.0 and best["t2i_r5"] == 1.0, best
    # It is the training that does it: the random model is near chance (1/8) before.
    before = history["epochs"][0]["val"]
    assert before["mean_r1"] < 0.35 and best["mean_r1"] > before["mean_r1"] + 0.5, (before, best)
    assert history["n_train"] == 960 and history["n_val"] == 240 and history["skipped"] == []
    assert len(history["epochs"]) == 31 and history["best_epoch"] >= 1
    losses = [e["train_loss"] for e in history["epochs"][1:]]
    assert losses[-1] < losses[0]
    assert all(e["logit_scale"] <= 100.0 + 1e-6 for e in history["epochs"])
    saved = json.loads((shapes["model"] / "history.json").read_text())
    assert saved["best"] == best and saved["config"]["loss"] == "infonce"
    assert shapes["seconds"]["finetune"] > 0  # timings are recorded (never asserted against a budget)


def test_finetuned_checkpoint_loads_as_hf_dir_and_generalises(shapes):
    from PIL import Image

    from imgclust.encoders import create_encoder

    enc = create_encoder(f"hf:{shapes['model']}", device="cpu")
    assert enc.has_text and enc.dim == 32
    # A second, independently drawn set (the run's images): zero-shot classification by caption.
    rows = [(p, lab) for p, lab in _heldout(shapes["heldout"])]
    X = enc.encode_images([Image.open(p).convert("RGB") for p, _ in rows])
    T = enc.encode_text([f"a {lab}" for _, lab in rows])
    groups = [CLASSES.index(lab) for _, lab in rows]
    rec = retrieval_recall(X, T, groups)
    assert rec["i2t_r1"] >= 0.9 and rec["t2i_r1"] >= 0.9, rec


def _heldout(folder: Path):
    for d in sorted(folder.iterdir()):
        if d.is_dir():
            for p in sorted(d.glob("*.png")):
                yield str(p), d.name.replace("_", " ")


def test_retrieval_recall_counts_identical_captions_once():
    img = np.eye(3, dtype=np.float32)
    txt = np.eye(3, dtype=np.float32)[[0, 2, 1]]  # captions 1 and 2 swapped
    rec = retrieval_recall(img, txt)
    assert rec["i2t_r1"] == pytest.approx(1 / 3) and rec["t2i_r1"] == pytest.approx(1 / 3)
    assert rec["i2t_r5"] == 1.0 and rec["t2i_r5"] == 1.0
    # Pairs 0 and 1 share a caption: either image / text is a correct answer for it.
    rec = retrieval_recall(np.eye(3, dtype=np.float32)[[0, 0, 2]], np.eye(3, dtype=np.float32)[[0, 0, 2]],
                           groups=[7, 7, 9])
    assert rec["i2t_r1"] == 1.0 and rec["t2i_r1"] == 1.0


def test_finetune_is_deterministic_and_restores_the_global_rng(small, tmp_path):
    import torch

    kw = dict(epochs=2, batch_size=8, lr=1e-3, val_fraction=0.25, device="cpu", random_state=3, progress=False)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with torch_threads(1):
        a = finetune_clip(small["pairs"], encoder=f"hf:{small['clip']}", out=tmp_path / "a", **kw)
        after = torch.rand(3)
        b = finetune_clip(small["pairs"], encoder=f"hf:{small['clip']}", out=tmp_path / "b", **kw)
    assert torch.equal(after, expected_next)  # training did not consume the caller's RNG
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert [e["val"] for e in a["epochs"]] == [e["val"] for e in b["epochs"]]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert a["n_val"] == 6 and a["n_train"] == 18


@pytest.mark.parametrize("train, frozen, trained", [
    ("proj", ["vision_model.encoder.layers.1.mlp.fc1.weight", "text_model.embeddings.token_embedding.weight"],
     ["visual_projection.weight", "text_projection.weight"]),
    ("last:1", ["vision_model.encoder.layers.0.mlp.fc1.weight", "text_model.encoder.layers.0.mlp.fc1.weight"],
     ["vision_model.encoder.layers.1.mlp.fc1.weight", "text_model.encoder.layers.1.mlp.fc1.weight",
      "vision_model.post_layernorm.weight", "visual_projection.weight"]),
])
def test_train_option_freezes_the_rest(small, tmp_path, train, frozen, trained):
    with torch_threads(1):
        h = finetune_clip(small["pairs"], encoder=f"hf:{small['clip']}", out=tmp_path / "ft", epochs=1,
                          batch_size=8, lr=1e-2, val_fraction=0, device="cpu", train=train, progress=False)
    before, after = _weights(small["clip"]), _weights(tmp_path / "ft")
    for key in frozen:
        assert np.array_equal(before[key], after[key]), key
    for key in trained:
        assert not np.array_equal(before[key], after[key]), key
    assert h["best"] is None and h["best_epoch"] == 1 and h["n_val"] == 0


def test_select_trainable_modes(small):
    from imgclust.encoders import create_encoder

    model = create_encoder(f"hf:{small['clip']}", device="cpu").model
    total = sum(1 for _ in model.parameters())
    assert len(select_trainable(model, "all")) == total
    proj = select_trainable(model, "proj")
    assert set(proj) == {"visual_projection.weight", "text_projection.weight", "logit_scale"}
    last = select_trainable(model, "last:2")  # both blocks of each 2-layer tower + heads
    assert "vision_model.encoder.layers.0.self_attn.q_proj.weight" in last
    assert "text_model.embeddings.token_embedding.weight" not in last
    for bad in ("last:0", "some", "last:x"):
        with pytest.raises(ImgclustError, match="--train"):
            select_trainable(model, bad)


def test_rocov2_layout_and_bad_images_are_skipped(small, tmp_path):
    """ROCOv2: a CSV with ID,Caption beside an images/ folder; broken and missing files are reported."""
    from PIL import Image

    root = tmp_path / "roco"
    (root / "images").mkdir(parents=True)
    rows = []
    with open(small["pairs"]) as f:
        for i, r in enumerate(csv.DictReader(f)):
            Image.open(r["path"]).save(root / "images" / f"ROCOv2_{i:04d}.png")
            rows.append((f"ROCOv2_{i:04d}", r["caption"]))
    (root / "images" / "ROCOv2_9998.png").write_bytes(b"not a png")
    rows += [("ROCOv2_9998", "a broken file"), ("ROCOv2_9999", "a missing file"), ("ROCOv2_0000", "")]
    with open(root / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "Caption"])
        w.writerows(rows)
    records, skipped = read_pairs(root / "train.csv")
    assert len(records) == 26 and [s["reason"] for s in skipped] == ["no caption"]
    with torch_threads(1):
        h = finetune_clip(root / "train.csv", encoder=f"hf:{small['clip']}", out=tmp_path / "ft", epochs=1,
                          batch_size=8, lr=1e-3, device="cpu", progress=False, cache_mb=0)  # no cache: re-decode
    reasons = {Path(s["path"]).name: s["reason"] for s in h["skipped"]}
    assert reasons["ROCOv2_9998.png"] == "not an image" and "ROCOv2_9999.jpg" in reasons
    assert h["n_pairs"] == 24 and h["config"]["cached_in_memory"] is False
    assert (tmp_path / "ft" / "model.safetensors").exists()


def test_siglip_trains_with_its_sigmoid_loss(small, tmp_path):
    sig = make_tiny_siglip(tmp_path / "siglip")
    with torch_threads(1):
        h = finetune_clip(small["pairs"], encoder=f"hf:{sig}", out=tmp_path / "ft", epochs=1, batch_size=8,
                          lr=1e-3, device="cpu", progress=False)
    assert h["config"]["loss"] == "sigmoid" and np.isfinite(h["epochs"][1]["train_loss"])

    from imgclust.encoders import create_encoder

    assert create_encoder(f"hf:{tmp_path / 'ft'}", device="cpu").has_text


def test_finetune_user_errors(small, tmp_path):
    vit = make_tiny_vit(tmp_path / "vit")
    with pytest.raises(ImgclustError, match="text tower"):
        finetune_clip(small["pairs"], encoder=f"hf:{vit}", out=tmp_path / "x", progress=False, device="cpu")
    no_caption = tmp_path / "nocap.csv"
    no_caption.write_text("path\n" + "\n".join(str(p) for p in (small["root"] / "pairs").glob("*.png")) + "\n")
    with pytest.raises(ImgclustError, match="caption"):
        finetune_clip(no_caption, encoder=f"hf:{small['clip']}", out=tmp_path / "x", progress=False, device="cpu")
    with pytest.raises(ImgclustError, match="not found"):
        finetune_clip(tmp_path / "missing.csv", out=tmp_path / "x", progress=False)
    for kw, match in (({"train": "half"}, "--train"), ({"epochs": 0}, "--epochs"), ({"batch_size": 1}, "--batch"),
                      ({"val_fraction": 1.0}, "--val-fraction")):
        with pytest.raises(ImgclustError, match=match):
            finetune_clip(small["pairs"], encoder=f"hf:{small['clip']}", out=tmp_path / "x", progress=False, **kw)


def test_cli_finetune(small, tmp_path):
    from typer.testing import CliRunner

    from imgclust.cli import app

    runner = CliRunner()
    with torch_threads(1):
        res = runner.invoke(app, ["finetune", "--pairs", str(small["pairs"]), "--encoder", f"hf:{small['clip']}",
                                  "--out", str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "8", "--lr",
                                  "1e-3", "--train", "last:1", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "best epoch 1" in res.output and f"hf:{tmp_path / 'ft'}" in res.output.replace("\n", "")
    assert json.loads((tmp_path / "ft" / "history.json").read_text())["config"]["train"] == "last:1"
    res = runner.invoke(app, ["finetune", "--pairs", str(small["pairs"]), "--encoder", f"hf:{small['clip']}",
                              "--out", str(tmp_path / "ft2"), "--train", "everything"])
    assert res.exit_code == 2 and "--train must be" in res.output and "Traceback" not in res.output
