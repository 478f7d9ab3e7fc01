"""Grad-CAM heatmaps: a bright square on a plain background must light up, with the real encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgclust.errors import ImgclustError

SIZE, S = 224, 96  # image side and square side (3 of the 7 feature cells)


def square_image(x0: int, y0: int, seed: int, bg: int = 100) -> Image.Image:
    """A plain grey image (faint noise) whose only structure is one bright square."""
    rng = np.random.default_rng(seed)
    a = np.full((SIZE, SIZE, 3), bg, np.float32) + rng.normal(0, 4, (SIZE, SIZE, 3))
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    ImageDraw.Draw(img).rectangle([x0, y0, x0 + S - 1, y0 + S - 1], fill=(245, 245, 245))
    return img


def disc_image(x0: int, y0: int, seed: int, bg: int = 100) -> Image.Image:
    img = square_image(0, 0, seed, bg)
    a = np.asarray(img).copy()
    a[:S, :S] = np.asarray(square_image(300, 300, seed + 1, bg))[:S, :S]  # erase the square
    img = Image.fromarray(a)
    ImageDraw.Draw(img).ellipse([x0, y0, x0 + S - 1, y0 + S - 1], fill=(40, 60, 200))
    return img


@pytest.fixture(scope="module")
def effnet():
    from imgclust.encoders import create_encoder

    return create_encoder("efficientnet-lite0", device="cpu")


# Grad-CAM lives on the 7x7 feature grid (32 px cells), upsampled: a peak can sit just past an
# edge. Measured on 40 random square positions with the correctly normalised Lite0: 95% of peaks
# inside, the rest at most 8 px out; so "on the square" means within a quarter cell (8 px).
EDGE = 8


def _inside(px, py, box, margin=EDGE):
    x0, y0 = box
    return x0 - margin <= px < x0 + S + margin and y0 - margin <= py < y0 + S + margin


def test_heatmap_of_a_bright_square_peaks_on_the_square(effnet):
    from imgclust.explore.explain import gradcam

    rng = np.random.default_rng(7)
    members = [square_image(int(a), int(b), i) for i, (a, b) in enumerate(rng.integers(8, SIZE - S - 8, (12, 2)))]
    centroid = effnet.encode_images(members).mean(0)  # the cluster centre in embedding space
    boxes = [(16, 16), (112, 16), (16, 112), (112, 112), (64, 64)]
    heat, sims, shown = gradcam(effnet, [square_image(x, y, 100 + i) for i, (x, y) in enumerate(boxes)], centroid)
    assert heat.shape == (len(boxes), SIZE, SIZE) and shown.shape == (len(boxes), SIZE, SIZE, 3)
    assert np.all(sims > 0.8) and heat.max() == pytest.approx(1.0)
    # The overlay background is the model's view: the image itself (224 px, no resize).
    assert np.abs(shown[0].astype(int) - np.asarray(square_image(16, 16, 100)).astype(int)).max() <= 1
    for h, box in zip(heat, boxes):
        py, px = np.unravel_index(int(h.argmax()), h.shape)
        assert _inside(px, py, box), f"peak {(px, py)} outside the square at {box}"
        m = np.zeros(h.shape, bool)
        m[box[1]:box[1] + S, box[0]:box[0] + S] = True
        far = np.ones(h.shape, bool)  # everything more than half a feature cell from the square
        far[max(box[1] - 16, 0):box[1] + S + 16, max(box[0] - 16, 0):box[0] + S + 16] = False
        assert h[m].max() > 1.02 * h[far].max()  # a clear winner, not a tie with the background
        assert h[m].mean() > 1.5 * h[~m].mean()  # measured minimum 1.57 over 40 positions


def test_receptive_field_offset_of_efficientnet(effnet):
    from imgclust.explore.explain import _cnn_geometry

    # Five stride-2 convs with TF "SAME" padding: +1/2 input pixel each, 15.5 px at stride 32.
    assert _cnn_geometry(effnet.model, SIZE) == (32.0, 15.5)


@pytest.fixture(scope="module")
def effnet_run(tmp_path_factory, effnet):
    from imgclust.api import cluster_images

    tmp = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(3)
    boxes = {}
    for cls, draw in (("squares", square_image), ("discs", disc_image)):
        (tmp / "img" / cls).mkdir(parents=True)
        for i, (x, y) in enumerate(rng.integers(12, SIZE - S - 12, (8, 2))):
            name = tmp / "img" / cls / f"{cls}_{i}.png"
            draw(int(x), int(y), 50 + i).save(name)
            boxes[str(name)] = (int(x), int(y))
    run_dir = tmp / "run"
    cluster_images([str(tmp / "img")], encoder=effnet, k=2, labels="folder", map="pca", cache_dir=tmp / "cache",
                   out=run_dir, plots=False, report=False)
    return run_dir, boxes


def test_explain_run_writes_overlays_and_report(effnet_run, effnet):
    import pyarrow.parquet as pq

    from imgclust.explore.explain import explain_run

    run_dir, boxes = effnet_run
    res = explain_run(run_dir, per_cluster=3, encoder=effnet)
    table = pq.read_table(run_dir / "clusters.parquet").to_pydict()
    assert len(res.items) == 6
    meta = json.loads((run_dir / "explain" / "explain.json").read_text())
    assert [it["index"] for it in meta["items"]] == [it.index for it in res.items]
    for it in res.items:
        assert (run_dir / "explain" / it.file).exists()
        # Prototypes: closest to the centre first.
        members = [i for i, c in enumerate(table["cluster"]) if c == it.cluster]
        ranked = sorted(members, key=lambda i: table["distance"][i])
        assert it.index in ranked[:3]
        if "squares" in it.path:
            assert _inside(*it.peak, boxes[it.path]), (it.path, it.peak, boxes[it.path])
    html = (run_dir / "report.html").read_text()
    assert '"explain":{' in html and '"overlay":' in html


def test_explain_needs_a_feature_encoder(tmp_path):
    from imgclust.explore.explain import explain_run
    from run_fixtures import make_run

    run_dir, _, _ = make_run(tmp_path, k=2, per_class=4, report=False, plots=False)
    with pytest.raises(ImgclustError, match="CNN or ViT"):
        explain_run(run_dir)


def test_cli_explain(effnet_run):
    from typer.testing import CliRunner

    from imgclust.cli import app

    run_dir, _ = effnet_run
    r = CliRunner().invoke(app, ["explain", str(run_dir), "--per-cluster", "1", "--clusters", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((run_dir / "explain").glob("cluster*.png"))) == 1
    r = CliRunner().invoke(app, ["explain", str(run_dir), "--clusters", "7"])
    assert r.exit_code == 2 and "no cluster 7" in r.output


@pytest.mark.parametrize("maker", ["make_tiny_vit", "make_tiny_clip", "make_tiny_dinov2"])
def test_vit_gradcam_with_a_tiny_random_model(tmp_path, maker):
    try:
        import hf_fixtures
        from imgclust.encoders import create_encoder
    except ImportError as exc:  # transformers is the optional [hf] extra
        pytest.skip(f"transformers / tests/hf_fixtures.py not available: {exc}")
    if not hasattr(hf_fixtures, maker):
        pytest.skip(f"tests/hf_fixtures.py has no {maker} yet")
    from imgclust.explore.explain import gradcam

    path = getattr(hf_fixtures, maker)(tmp_path / "model")
    enc = create_encoder(f"hf:{path}", device="cpu")
    imgs = [square_image(16, 16, 0), square_image(112, 112, 1)]
    heat, sims, shown = gradcam(enc, imgs, enc.encode_images(imgs).mean(0))
    side = shown.shape[1]
    assert heat.shape == (2, side, side) and np.isfinite(heat).all()
    assert heat.max() == pytest.approx(1.0) and heat.std() > 0  # a real, non-constant map
    # The map differs when the square moves: it depends on the image content.
    assert not np.allclose(heat[0], heat[1])
