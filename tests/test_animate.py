"""k-means / k-medoids iteration animations and the initialisation comparison."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.errors import ImgclustError
from imgclust.explore.animate import INITS, animate_run, compare_inits, init_centers, kmeans_history, kmedoids_history
from run_fixtures import make_run


def _blobs(n=150, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, (k, 5))
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(0, 1, (n, 5)), y


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("animate")
    run_dir, _, _ = make_run(tmp, k=3, report=False, plots=False)
    return run_dir


@pytest.mark.parametrize("method", ["kmeans", "kmedoids"])
def test_gif_has_one_frame_per_iteration(run_dir, tmp_path, method):
    res = animate_run(run_dir, method, k=3, init="random", out_dir=tmp_path, seeds=2, mp4=False)
    assert res.n_iter == res.history.n_iter >= 2
    with Image.open(res.gif) as gif:
        assert gif.n_frames == res.n_iter
        durations = []
        for f in range(gif.n_frames):
            gif.seek(f)
            durations.append(gif.info["duration"])
        assert durations[-1] > durations[0]  # the final state is held
    meta = json.loads(res.meta.read_text())
    assert meta["n_iter"] == res.n_iter and meta["gif"] == res.gif.name
    assert set(meta["inits"]) == set(INITS[method])
    assert res.figure.exists() and res.figure.stat().st_size > 10_000


def test_kmeans_history_is_lloyd():
    X, y = _blobs()
    h = kmeans_history(X, 4, init="k-means++", max_iter=50, random_state=1)
    assert h.converged and np.array_equal(h.labels[-1], h.labels[-2])
    # Lloyd's objective never increases.
    assert all(b <= a + 1e-9 for a, b in zip(h.inertia, h.inertia[1:]))
    # Final centres are the means of their members.
    for c in range(4):
        np.testing.assert_allclose(h.centers[-1][c], X[h.labels[-1] == c].mean(0))
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, h.final_labels) > 0.95


def test_kmedoids_history_medoids_are_points():
    X, y = _blobs(seed=3)
    h = kmedoids_history(X, 4, init="build", max_iter=50)
    assert h.converged
    assert all(b <= a + 1e-9 for a, b in zip(h.inertia, h.inertia[1:]))
    np.testing.assert_array_equal(h.centers[-1], X[h.medoids[-1]])


def test_init_methods_pick_distinct_points():
    X, _ = _blobs()
    rng = np.random.default_rng(0)
    for name in ("random", "k-means++", "maximin", "build", "k-medoids++"):
        idx = init_centers(X, 4, name, rng)
        assert len(set(idx.tolist())) == 4
    # Furthest-first covers all four well-separated blobs.
    _, y = _blobs()
    assert len(set(y[init_centers(X, 4, "maximin", rng)].tolist())) == 4
    with pytest.raises(ImgclustError):
        init_centers(X, 4, "nope", rng)


def test_compare_inits_reports_inertia_and_scores():
    X, y = _blobs()
    comp = compare_inits(X, 4, "kmeans", seeds=3, labels_true=y.tolist())
    assert list(comp) == list(INITS["kmeans"])
    for r in comp.values():
        assert len(r["inertia"]) == len(r["silhouette"]) == len(r["nmi"]) == 3
        assert r["curve"][-1] == pytest.approx(r["inertia"][0])
    # k-means++ is at least as good as random on average on separated blobs.
    assert np.mean(comp["k-means++"]["inertia"]) <= np.mean(comp["random"]["inertia"]) + 1e-6


def test_mp4_when_ffmpeg_present(run_dir, tmp_path):
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed: the MP4 is optional")
    res = animate_run(run_dir, "kmeans", k=3, out_dir=tmp_path, seeds=1)
    assert res.mp4 is not None and res.mp4.stat().st_size > 1000


def test_cli_animate_and_report(tmp_path, run_dir):
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    r = CliRunner().invoke(app, ["animate", str(dst), "--method", "kmedoids", "--seeds", "2", "--no-mp4"])
    assert r.exit_code == 0, r.output
    assert (dst / "animate" / "kmedoids.gif").exists()
    html = (dst / "report.html").read_text()
    assert "kmedoids.gif" in html  # the report shows the animation
    r = CliRunner().invoke(app, ["animate", str(dst), "--method", "dbscan"])
    assert r.exit_code == 2 and "kmeans or kmedoids" in r.output
