"""The command line: user errors are one clear line (never a traceback), commands write run dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import is_png, write_image_folder
from imgclust.cli import app

pytestmark = pytest.mark.usefixtures("limit_threads")

FAST = ["--encoder", "pixels", "--map", "pca", "--quiet"]
WIDE = {"COLUMNS": "250"}  # rich wraps table cells to the terminal width; give it room


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "images"
    write_image_folder(root, per_class=6)
    (root / "broken.jpg").write_text("not a jpeg")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-cache")


def _invoke(runner, args, **kw):
    result = runner.invoke(app, [str(a) for a in args], env=WIDE, **kw)
    assert "Traceback" not in result.output, result.output
    return result


def _user_error(result, code: int = 2) -> str:
    """The run failed the friendly way: exit code, no exception escaping, exactly one stderr line."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(runner, folder, cache, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("cli-run") / "run"
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        result = _invoke(runner, ["run", folder, *FAST, "--k", "3", "--labels", "folder", "--out", out,
                                  "--cache-dir", cache])
    return out, result


# --------------------------------------------------------------------------- user errors
def test_bad_path(runner, tmp_path):
    line = _user_error(_invoke(runner, ["run", tmp_path / "missing", *FAST, "--cache-dir", tmp_path]))
    assert line == f"error: input not found: {tmp_path / 'missing'}"


def test_empty_folder(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    line = _user_error(_invoke(runner, ["run", tmp_path / "empty", *FAST, "--cache-dir", tmp_path]))
    assert "no images found in" in line


def test_k_larger_than_images(runner, tmp_path):
    write_image_folder(tmp_path / "few", per_class=1)
    line = _user_error(_invoke(runner, ["run", tmp_path / "few", *FAST, "--k", "50", "--cache-dir", tmp_path,
                                        "--out", tmp_path / "out"]))
    assert line == "error: k=50 is larger than the number of images (3)"
    assert not (tmp_path / "out").exists()


def test_bad_k_value(runner, folder, tmp_path):
    line = _user_error(_invoke(runner, ["run", folder, *FAST, "--k", "many", "--cache-dir", tmp_path]))
    assert line == "error: --k must be a number, 'auto' or 'none' (got 'many')"


def test_unknown_encoder(runner, folder, tmp_path):
    line = _user_error(_invoke(runner, ["run", folder, "--encoder", "resnet-9000", "--map", "pca", "--quiet",
                                        "--cache-dir", tmp_path, "--k", "3"]))
    assert "unknown encoder 'resnet-9000'" in line
    for name in ("efficientnet-lite0", "pixels", "clip-vit-b-32", "dinov2-s", "hf:"):
        assert name in line


def test_unknown_method(runner, folder, tmp_path):
    line = _user_error(_invoke(runner, ["run", folder, *FAST, "--method", "magic", "--k", "3",
                                        "--cache-dir", tmp_path]))
    assert "unknown method 'magic'" in line
    for name in ("kmeans", "kmedoids", "hdbscan", "agglomerative", "spectral", "scan", "temi"):
        assert name in line


def test_cluster_from_non_run(runner, tmp_path):
    line = _user_error(_invoke(runner, ["cluster", "--from", tmp_path, "--k", "3", "--quiet"]))
    assert "is not an imgclust run directory" in line


def test_console_script_user_error_no_traceback(tmp_path):
    exe = Path(sys.executable).with_name("imgclust")
    assert exe.exists()
    proc = subprocess.run([str(exe), "run", str(tmp_path / "nowhere"), "--encoder", "pixels", "--quiet",
                           "--cache-dir", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.strip() == f"error: input not found: {tmp_path / 'nowhere'}"


# --------------------------------------------------------------------------- commands
def test_encoders_lists_offline_ones_as_available(runner):
    result = _invoke(runner, ["encoders"])
    assert result.exit_code == 0
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 7 and cells[1]:
            rows[cells[1]] = cells[2:]
    assert rows["efficientnet-lite0"][0] == "1280" and rows["efficientnet-lite0"][3] == "yes"
    assert rows["pixels"][0] == "3072" and rows["pixels"][3] == "yes"
    assert {"clip-vit-b-32", "siglip-b-16", "dinov2-s"} <= set(rows)


def test_run_writes_run_dir_and_prints_scores(run_dir):
    out, result = run_dir
    assert result.exit_code == 0, result.output
    for name in ("clusters.parquet", "clusters.csv", "metrics.json", "run.json", "embeddings.npy", "report.html"):
        assert (out / name).is_file(), name
    assert is_png(out / "plots" / "cluster_map.png") and is_png(out / "plots" / "confusion.png")
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_images"] == 18 and m["n_clusters"] == 3 and m["external"]["acc"] == 1.0
    assert [Path(s["path"]).name for s in m["skipped"]] == ["broken.jpg"]
    text = result.output
    assert "18 images -> 3 clusters" in text
    for score in ("silhouette", "calinski_harabasz", "davies_bouldin", "acc", "nmi", "ari"):
        assert score in text
    assert "1.0000" in text  # acc
    assert "skipped 1 file(s)" in text and "broken.jpg: not an image" in text
    assert "embedded 18 new image(s)" in text
    assert f"run directory: {out}" in text


def test_rerun_is_cached(runner, folder, cache, tmp_path):
    result = _invoke(runner, ["run", folder, *FAST, "--k", "3", "--labels", "folder", "--out", tmp_path / "again",
                              "--cache-dir", cache, "--no-report"])
    assert result.exit_code == 0, result.output
    assert "embedded" not in result.output  # nothing new to embed
    r = json.loads((tmp_path / "again" / "run.json").read_text())
    assert r["timings"]["n_encoded"] == 0 and r["timings"]["n_cached"] == 18
    assert not (tmp_path / "again" / "report.html").exists()


def test_cluster_from_run(runner, run_dir):
    out, _ = run_dir
    result = _invoke(runner, ["cluster", "--from", out, "--method", "agglomerative", "--k", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    new = out.with_name(out.name + "-agglomerative")
    assert (new / "clusters.parquet").is_file() and (new / "report.html").is_file()
    r = json.loads((new / "run.json").read_text())
    assert r["config"]["method"] == "agglomerative" and r["config"]["from_run"] == str(out)
    m = json.loads((new / "metrics.json").read_text())
    assert m["n_clusters"] == 3 and m["external"]["acc"] == 1.0
    assert "18 images -> 3 clusters" in result.output


def test_cluster_from_run_custom_out(runner, run_dir, tmp_path):
    out, _ = run_dir
    result = _invoke(runner, ["cluster", "--from", out, "--method", "kmedoids", "--k", "2", "--quiet",
                              "--out", tmp_path / "k2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "k2" / "metrics.json").read_text())["n_clusters"] == 2


def test_cluster_from_run_head_options(runner, run_dir, tmp_path):
    out, _ = run_dir
    result = _invoke(runner, ["cluster", "--from", out, "--method", "scan", "--k", "3", "--quiet", "--heads", "3",
                              "--no-self-label", "--epochs", "2",
                              "--out", tmp_path / "scan"])
    assert result.exit_code == 0, result.output
    params = json.loads((tmp_path / "scan" / "run.json").read_text())["config"]["method_params"]
    assert params["n_heads"] == 3 and params["self_label"] is False and params["epochs"] == 2
    # An option the method does not take is one clear line, not a traceback.
    line = _user_error(_invoke(runner, ["cluster", "--from", out, "--method", "temi", "--k", "3", "--quiet",
                                        "--no-self-label", "--out", tmp_path / "temi"]))
    assert "does not take self_label" in line


def test_report_rebuilds(runner, run_dir):
    out, _ = run_dir
    report = out / "report.html"
    before = report.read_text(encoding="utf-8")
    report.unlink()
    result = _invoke(runner, ["report", out])
    assert result.exit_code == 0, result.output
    assert report.is_file() and str(report) in result.output.replace("\n", "")
    assert len(report.read_text(encoding="utf-8")) == pytest.approx(len(before), rel=0.05)


def test_report_on_non_run(runner, tmp_path):
    assert "not an imgclust run directory" in _user_error(_invoke(runner, ["report", tmp_path]))


def test_k_auto(runner, folder, cache, tmp_path):
    result = _invoke(runner, ["run", folder, *FAST, "--k", "auto", "--labels", "folder",
                              "--out", tmp_path / "auto", "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    assert is_png(tmp_path / "auto" / "plots" / "k_sweep.png")
    m = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert m["k_sweep"]["best_k"] == 3 and m["n_clusters"] == 3
    assert "18 images -> 3 clusters" in result.output


def test_hdbscan_with_k_none(runner, folder, cache, tmp_path):
    result = _invoke(runner, ["run", folder, *FAST, "--method", "hdbscan", "--k", "none", "--labels", "folder",
                              "--out", tmp_path / "hdb", "--cache-dir", cache, "--no-report"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "hdb" / "metrics.json").read_text())
    assert m["n_images"] == 18 and json.loads((tmp_path / "hdb" / "run.json").read_text())["config"]["k"] is None
    assert m["n_clusters"] == 3 and m["n_noise"] == 0 and m["external"]["acc"] == 1.0
