"""neighbors --sweep: the query's top-n candidates clustered for growing n, scored and charted."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.errors import ImgclustError
from imgclust.explore.candidates import parse_sweep, sweep_candidates
from imgclust.explore.neighbors import cluster_candidates, neighbors

pytestmark = pytest.mark.usefixtures("limit_threads")


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    from threadpoolctl import threadpool_limits

    from run_fixtures import make_run

    tmp = tmp_path_factory.mktemp("sweep")
    with threadpool_limits(limits=1):
        run_dir, images, result = make_run(tmp, per_class=12, plots=False, report=False)
    return run_dir, images, result


def test_parse_sweep():
    assert parse_sweep("50,100,...,300") == [50, 100, 150, 200, 250, 300]
    assert parse_sweep("10, 5,10") == [5, 10]
    assert parse_sweep("20,30,...,45") == [20, 30, 40]
    for bad in ("", "a,b", "50,...,100", "100,50,...,300", "1,2"):
        with pytest.raises(ImgclustError, match="--sweep"):
            parse_sweep(bad)


def test_first_point_equals_direct_clustering(labelled_run, tmp_path):
    run_dir, _, result = labelled_run
    query = result.paths[5]
    res = sweep_candidates(run_dir, query, [8, 20, 36, 500], k=3, out=tmp_path / "sw")
    assert [r["n"] for r in res.rows] == [8, 20, 36]  # 500 is clipped to the run's 36 images
    assert res.labelled
    direct = cluster_candidates(run_dir, neighbors(run_dir, query, top=8), 3, tmp_path / "direct", report=False)
    ext = direct.metrics["external"]
    first = res.rows[0]
    assert (first["acc"], first["nmi"], first["ari"], first["top5"]) == (
        ext["acc"], ext["nmi"], ext["ari"], ext.get("top5_neighbor_acc"))
    assert first["silhouette"] == direct.metrics["internal"]["silhouette"]
    # All 36 images of three pixel-separable classes: the clustering recovers them.
    assert res.rows[-1]["acc"] == 1.0 and res.rows[-1]["n_classes"] == 3
    assert res.rows[-1]["top5"] is not None and res.rows[-1]["top5"] > 0.9
    # Table and chart on disk.
    rows = list(csv.DictReader(res.csv.open()))
    assert [int(r["n"]) for r in rows] == [8, 20, 36]
    assert float(rows[0]["acc"]) == pytest.approx(first["acc"])
    meta = json.loads(res.json.read_text())
    assert meta["labelled"] and meta["rows"][0]["n"] == 8
    assert res.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unlabelled_run_gives_silhouette_only(labelled_run, tmp_path):
    from imgclust.api import cluster_images

    _, images, _ = labelled_run
    run = tmp_path / "unl"
    r = cluster_images([str(images)], encoder="pixels", k=3, map="pca", cache_dir=tmp_path / "cache", out=run,
                       plots=False, report=False, progress=False)
    res = sweep_candidates(run, r.paths[0], [10, 20], out=tmp_path / "sw")
    assert not res.labelled
    assert res.column("acc") == [None, None] and all(isinstance(v, float) for v in res.column("silhouette"))
    assert res.rows[0]["k"] == 3  # the run's k
    assert res.chart.exists()


def test_cli_sweep(labelled_run, tmp_path):
    run_dir, _, result = labelled_run
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["neighbors", str(run_dir), result.paths[0], "--sweep", "10,20,...,30",
                                 "--cluster", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "sweep.csv").exists() and (out / "sweep.png").exists() and (out / "sweep.json").exists()
    assert [row["n"] for row in json.loads((out / "sweep.json").read_text())["rows"]] == [10, 20, 30]
    r = CliRunner().invoke(app, ["neighbors", str(run_dir), result.paths[0], "--sweep", "x"])
    assert r.exit_code != 0 and "--sweep" in r.output
