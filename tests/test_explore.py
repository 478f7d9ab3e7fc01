"""neighbors / candidate clustering / assign on a small synthetic run (raw-pixel encoder: fast)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.errors import ImgclustError
from imgclust.explore.assign import assign, cluster_space
from imgclust.explore.neighbors import cluster_candidates, neighbors
from run_fixtures import make_run

runner = CliRunner()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explore")
    run_dir, images, result = make_run(tmp, k=3, report=False, plots=False)
    return run_dir, images, result


@pytest.fixture()
def run_copy(base_run, tmp_path):
    """A private copy of the run, for tests that append to it."""
    run_dir, images, result = base_run
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst, images, result


def test_query_itself_comes_back_first(base_run):
    run_dir, images, result = base_run
    for i in (0, 13, 30):
        query = result.paths[i]
        res = neighbors(run_dir, query, top=5)
        assert len(res.items) == 5
        assert res.items[0].path == query and res.items[0].index == i
        assert res.items[0].similarity == pytest.approx(1.0, abs=1e-4)
        sims = [n.similarity for n in res.items]
        assert sims == sorted(sims, reverse=True)
        # Same-class images follow: the synthetic classes are easy for raw pixels.
        assert res.items[1].label == result.records[i].label


def test_neighbors_of_an_outside_image(base_run, tmp_path):
    run_dir, images, result = base_run
    src = Path(result.paths[20])
    copy = tmp_path / "query.png"
    shutil.copy(src, copy)
    res = neighbors(run_dir, copy, top=3)
    assert res.items[0].path == str(src)  # its identical twin in the run


def test_cluster_candidates_writes_a_small_report(base_run, tmp_path):
    run_dir, images, result = base_run
    res = neighbors(run_dir, result.paths[0], top=20)
    sub = cluster_candidates(run_dir, res, 2, tmp_path / "cand")
    assert (tmp_path / "cand" / "report.html").exists()
    assert len(sub.labels) == 20 and sub.n_clusters == 2
    assert sorted(sub.paths) == sorted(n.path for n in res.items)


def test_neighbors_errors(base_run, tmp_path):
    run_dir, images, result = base_run
    with pytest.raises(ImgclustError, match="not found"):
        neighbors(run_dir, tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImgclustError, match="not an image"):
        neighbors(run_dir, bad)
    with pytest.raises(ImgclustError, match="not an imgclust run"):
        neighbors(tmp_path, result.paths[0])


def test_cli_neighbors(base_run, tmp_path):
    run_dir, images, result = base_run
    out = tmp_path / "nb"
    r = runner.invoke(app, ["neighbors", str(run_dir), result.paths[3], "--top", "4", "--cluster", "2",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert Path(result.paths[3]).name in r.output
    assert (out / "report.html").exists()
    r = runner.invoke(app, ["neighbors", str(run_dir), result.paths[3], "--top", "2", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["rank"] for row in rows] == [1, 2] and rows[0]["path"] == result.paths[3]
    r = runner.invoke(app, ["neighbors", str(run_dir), str(tmp_path / "nope.png")])
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output


def test_cluster_space_reproduces_the_saved_distances(base_run):
    from imgclust.rundir import load_run

    run_dir, _, result = base_run
    run = load_run(run_dir)
    transform, centers, space = cluster_space(run)
    assert space.startswith("pca-")  # the refit PCA was verified, not the fallback
    X = transform(run["embeddings"])
    d = np.linalg.norm(X - centers[result.labels], axis=1)
    np.testing.assert_allclose(d, result.distances, rtol=1e-3, atol=1e-4)


def test_copied_image_is_assigned_to_its_source_cluster(run_copy, tmp_path):
    run_dir, images, result = run_copy
    new = tmp_path / "new"
    new.mkdir()
    picks = [2, 15, 27]  # one of each class
    for i in picks:
        shutil.copy(result.paths[i], new / f"copy_{i}.png")
    n0 = len(result.paths)
    res = assign(run_dir, [str(new)], report=True)
    assert res.space.startswith("pca-")
    by_name = {Path(p).name: int(c) for p, c in zip(res.paths, res.clusters)}
    for i in picks:
        assert by_name[f"copy_{i}.png"] == int(result.labels[i])
    assert np.all(res.confidence > 0) and np.all(res.confidence <= 1)

    table = pq.read_table(run_dir / "clusters.parquet").to_pydict()
    emb = np.load(run_dir / "embeddings.npy")
    assert len(table["path"]) == len(emb) == n0 + 3
    assert table["assigned"] == [False] * n0 + [True] * 3
    for p, c in zip(res.paths, res.clusters):
        assert table["cluster"][table["path"].index(p)] == c
    # The new rows land on their twins on the map.
    for i in picks:
        j = table["path"].index(str(new / f"copy_{i}.png"))
        assert table["x"][j] == pytest.approx(table["x"][i], abs=1e-3)
    assert (run_dir / "clusters.csv").read_text().count("copy_") == 3
    info = json.loads((run_dir / "run.json").read_text())
    assert info["assign"]["n_fit"] == n0 and info["assign"]["batches"][0]["n"] == 3
    assert "copy_2.png" in (run_dir / "report.html").read_text()
    assert not list(run_dir.glob(".*.tmp"))

    # Assigning the same files again changes nothing; the fit stays the original rows.
    again = assign(run_dir, [str(new)], report=False)
    assert len(again.paths) == 0 and {s["reason"] for s in again.skipped} == {"already in the run"}
    more = tmp_path / "more.png"
    shutil.copy(result.paths[5], more)
    res2 = assign(run_dir, [str(more)], report=False)
    assert res2.clusters.tolist() == [int(result.labels[5])] and res2.n_total == n0 + 4


def test_assign_without_reduction_and_undecodable_input(tmp_path):
    from imgclust.api import recluster

    run_dir, images, result = make_run(tmp_path, k=3, report=False, plots=False)
    flat = tmp_path / "flat"
    recluster(run_dir, method="kmeans", k=3, reduce="none", out=flat, plots=False, report=False)
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(result.paths[30], new / "a.png")
    (new / "broken.png").write_bytes(b"\x89PNG broken")
    labels = pq.read_table(flat / "clusters.parquet").column("cluster").to_pylist()
    res = assign(flat, [str(new)], report=False)
    assert res.space == "input"
    assert res.clusters.tolist() == [labels[30]]
    assert [s["reason"] for s in res.skipped] == ["truncated or corrupt image"] or len(res.skipped) == 1


def test_cli_assign(run_copy, tmp_path):
    run_dir, images, result = run_copy
    shutil.copy(result.paths[1], tmp_path / "x.png")
    r = runner.invoke(app, ["assign", str(run_dir), str(tmp_path / "x.png"), "-q", "--no-report"])
    assert r.exit_code == 0, r.output
    assert "1 image(s) assigned" in r.output
    assert pq.read_table(run_dir / "clusters.parquet").num_rows == len(result.paths) + 1
    r = runner.invoke(app, ["assign", str(tmp_path), str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "not an imgclust run" in r.output
