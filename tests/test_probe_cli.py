"""`imgclust probe RUN_DIR`: the linear probe next to the clustering, end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from conftest import write_image_folder
from imgclust.api import cluster_images
from imgclust.cli import app
from imgclust.explore.probe import probe_run


def _run(tmp_path, labels="folder"):
    write_image_folder(tmp_path / "imgs", per_class=10)
    out = tmp_path / "run"
    cluster_images(tmp_path / "imgs", encoder="pixels", k=3, labels=labels, map="pca", out=out,
                   cache_dir=tmp_path / "cache", report=False, plots=False)
    return out


def test_probe_writes_supervised_reference(tmp_path):
    out = _run(tmp_path)
    res = probe_run(out, cv=5)
    # Colour + shape classes are linearly separable in pixel space: the probe is perfect.
    assert res["linear_probe"]["acc"] == 1.0
    assert res["linear_probe"]["cv"] == 5 and res["linear_probe"]["n"] == 30
    assert res["kmeans_baseline"]["acc"] == 1.0
    saved = json.loads((out / "metrics.json").read_text())["probe"]
    assert saved["acc"] == 1.0 and saved["linear_probe"]["n_classes"] == 3


def test_probe_cli_table_and_errors(tmp_path):
    out = _run(tmp_path)
    r = CliRunner().invoke(app, ["probe", str(out), "--cv", "3", "--no-baseline"])
    assert r.exit_code == 0, r.output
    assert "linear probe (3-fold)" in r.output and "this run" in r.output
    unlabelled = _run(tmp_path / "u", labels=None)
    r = CliRunner().invoke(app, ["probe", str(unlabelled)])
    assert r.exit_code == 2
    assert "has no labels" in r.output and "Traceback" not in r.output
