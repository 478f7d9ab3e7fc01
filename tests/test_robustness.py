"""``imgclust robustness``: deterministic corruptions that grow with severity, cached vectors, the table and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_image, write_image_folder
from imgclust.cli import app
from imgclust.errors import ImgclustError
from imgclust.explore._corruptions import CORRUPTIONS, SEVERITIES, corrupt
from imgclust.explore.robustness import robustness

pytestmark = pytest.mark.usefixtures("limit_threads")
PIXEL_CORRUPTIONS = [c for c in CORRUPTIONS if c != "distractors"]
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-test"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rob") / "images"
    write_image_folder(root, per_class=5)
    return root


@pytest.fixture(scope="module")
def distractors(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distractors")
    rng = np.random.default_rng(5)
    from PIL import Image

    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"d{i}.png")
    return root


def _images():
    return [make_image((60 + 40 * i, 120, 200 - 30 * i), "circle" if i % 2 else "square", size=48, seed=i)
            for i in range(4)]


def _diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


@pytest.mark.parametrize("name", PIXEL_CORRUPTIONS)
def test_each_corruption_changes_pixels_more_as_severity_rises(name):
    imgs = _images()
    changes = [np.mean([_diff(im, corrupt(im, name, s, seed=0, key=f"{i:032x}")) for i, im in enumerate(imgs)])
               for s in SEVERITIES]
    assert changes[0] > 0.5, changes  # severity 1 already changes the image
    assert all(b > a for a, b in zip(changes, changes[1:])), changes
    out = corrupt(imgs[0], name, 3, key="ab" * 16)
    assert out.size == imgs[0].size and out.mode == "RGB"


@pytest.mark.parametrize("name", PIXEL_CORRUPTIONS)
def test_corruptions_are_deterministic_per_seed_and_image(name):
    im = _images()[0]
    a = np.asarray(corrupt(im, name, 4, seed=3, key="12" * 16))
    assert np.array_equal(a, np.asarray(corrupt(im, name, 4, seed=3, key="12" * 16)))
    other_seed = np.asarray(corrupt(im, name, 4, seed=4, key="12" * 16))
    other_image = np.asarray(corrupt(im, name, 4, seed=3, key="34" * 16))
    if CORRUPTIONS[name].random:  # noise and occluder differ per seed and per image, and nothing else does
        assert not np.array_equal(a, other_seed) and not np.array_equal(a, other_image)
    else:
        assert np.array_equal(a, other_seed) and np.array_equal(a, other_image)


def test_occluders_are_nested_across_severities():
    im = _images()[1]
    masks = [np.any(np.asarray(corrupt(im, "occlusion", s, key="cd" * 16)) != np.asarray(im), axis=2)
             for s in SEVERITIES]
    assert all((lo & ~hi).sum() == 0 for lo, hi in zip(masks, masks[1:]))  # a lower severity's pixels stay covered


def test_unknown_names_and_severities_are_user_errors(folder, tmp_path):
    with pytest.raises(ImgclustError, match="unknown corruption 'fog'"):
        robustness(folder, "pixels", corruptions="fog", cache_dir=tmp_path)
    with pytest.raises(ImgclustError, match="severity must be one of"):
        robustness(folder, "pixels", corruptions="jpeg", severities=[0, 6], cache_dir=tmp_path)
    with pytest.raises(ImgclustError, match="distractors needs"):
        robustness(folder, "pixels", corruptions="distractors", cache_dir=tmp_path)
    with pytest.raises(ImgclustError, match="adds images"):
        corrupt(_images()[0], "distractors", 1)


def test_rows_are_cached_and_a_second_run_encodes_nothing(folder, distractors, tmp_path, monkeypatch):
    kw = dict(labels="folder", corruptions="gaussian_noise,distractors", severities=[1, 5], k=3,
              method="agglomerative",
              distractors=distractors, map="pca", cache_dir=tmp_path / "cache")
    first = robustness(folder, "pixels", **kw)
    n = len(first.clean.records)
    noise = [r for r in first.rows if r["corruption"] == "gaussian_noise"]
    assert [r["severity"] for r in noise] == [0, 1, 5] and all(r["n_encoded"] == n for r in noise[1:])
    assert noise[1]["cosine_to_clean"] > noise[2]["cosine_to_clean"]  # stronger noise moves the vectors further
    dis = [r for r in first.rows if r["corruption"] == "distractors"]
    assert [r["n_images"] for r in dis] == [n, n + round(0.1 * n), n + 8]  # capped at the 8 available
    assert dis[2]["param"] == pytest.approx(8 / n)
    assert first.score("gaussian_noise", 0, "acc") == 1.0  # clean synthetic classes are separable

    from imgclust.encoders.pixels import PixelEncoder

    def boom(self, images):
        raise AssertionError("re-encoded a cached image")

    monkeypatch.setattr(PixelEncoder, "encode_images", boom)
    second = robustness(folder, "pixels", **kw)
    assert all(r["n_encoded"] == 0 for r in second.rows)
    keys = ("acc", "nmi", "ari", "silhouette", "nmi_vs_clean", "cosine_to_clean")
    assert [[r[k] for k in keys] for r in second.rows] == [[r[k] for k in keys] for r in first.rows]


def test_cli_end_to_end_writes_table_json_plot_and_report(folder, distractors, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["robustness", str(folder), "--labels", "folder", "-e", "pixels", "--map", "pca",
                                   "-k", "3", "-m", "agglomerative", "-c", "gaussian_noise,jpeg",
                                   "--severities", "2,4",
                                   "--distractors", str(distractors), "--cache-dir", str(tmp_path / "c"),
                                   "-o", str(out), "-q"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "gaussian_noise" in res.output and "jpeg" in res.output
    import pyarrow.parquet as pq

    table = pq.read_table(out / "robustness.parquet").to_pylist()
    assert [(r["corruption"], r["severity"]) for r in table][:3] == [("gaussian_noise", 0), ("gaussian_noise", 2),
                                                                     ("gaussian_noise", 4)]
    assert {r["corruption"] for r in table} == {"gaussian_noise", "jpeg"}  # no distractors: not asked
    data = json.loads((out / "robustness.json").read_text())
    assert len(data["rows"]) == 6 and data["config"]["params"]["jpeg"] == [25, 18, 15, 10, 7]
    assert (out / "robustness.csv").read_text().startswith("\"corruption\"")
    assert (out / "plots" / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "clusters.parquet").is_file() and (out / "report.html").is_file()
    from imgclust.report.builder import report_payload

    payload, _ = report_payload(out)
    assert len(payload["robustness"]["rows"]) == 6 and "acc" in payload["robustness"]["keys"]
    assert "robustness" in payload["plots"]
    bad = CliRunner().invoke(app, ["robustness", str(folder), "-e", "pixels", "-c", "snow"])
    assert bad.exit_code != 0 and "unknown corruption 'snow'" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason="CIFAR-10 test folder not available")
def test_scores_fall_as_noise_rises_on_cifar10(tmp_path):
    from imgclust.pipeline.sources import discover

    by: dict = {}
    for r in sorted(discover(str(CIFAR), labels="folder"), key=lambda r: r.path):
        by.setdefault(r.label, []).append(r)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{r.path},{r.label}\n" for rs in by.values() for r in rs[:20]))
    res = robustness(str(manifest), "efficientnet-lite0", labels="manifest", corruptions="gaussian_noise",
                     severities=[3, 5], k=10, map="pca", device="cpu")
    nmi = [res.score("gaussian_noise", s, "nmi") for s in (0, 3, 5)]
    cos = [res.score("gaussian_noise", s, "cosine_to_clean") for s in (0, 3, 5)]
    assert nmi[0] > nmi[1] > nmi[2] and nmi[0] - nmi[2] > 0.1, nmi
    assert cos[0] > cos[1] > cos[2], cos


def test_a_run_directory_brings_its_images_and_settings(folder, tmp_path):
    from imgclust.api import cluster_images

    run = tmp_path / "run"
    ref = cluster_images(folder, "pixels", labels="folder", k=3, method="agglomerative", map="pca",
                         reduce="none", out=run, cache_dir=tmp_path / "c", report=False, plots=False)
    res = robustness(run, corruptions="jpeg", severities=[5], cache_dir=tmp_path / "c")  # defaults overridden
    assert res.config["method"] == "agglomerative" and res.config["k"] == 3 and res.config["reduce"] == "none"
    assert res.config["encoder"] == "pixels" and res.config["labels"] == "folder"
    assert np.array_equal(res.clean.labels, ref.labels)
    assert res.score("jpeg", 0, "acc") == ref.metrics["external"]["acc"]
