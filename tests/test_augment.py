"""``--augment N``: seeded views, embedded once, used as marked extra points and as views for the heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClusterMixin
from typer.testing import CliRunner

from conftest import make_image, write_image_folder
from imgclust.api import cluster_images, recluster
from imgclust.augment import augment_view, view_transform
from imgclust.cli import app
from imgclust.pipeline.sources import file_hash, load_image

pytestmark = pytest.mark.usefixtures("limit_threads")
FAST = dict(encoder="pixels", labels="folder", k=3, map="pca", method="agglomerative")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("aug") / "images"
    write_image_folder(root, per_class=4)
    return root


class ViewRecorder(ClusterMixin, BaseEstimator):
    """Takes views like SCAN/TEMI and remembers what it was given."""

    def __init__(self, n_clusters=3, random_state=0):
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, X, y=None, views=None):
        from sklearn.cluster import AgglomerativeClustering

        self.X_, self.views_ = np.asarray(X), None if views is None else np.asarray(views)
        self.labels_ = AgglomerativeClustering(self.n_clusters).fit_predict(X)
        return self


def test_views_are_deterministic_per_seed_image_and_view():
    img = make_image((200, 40, 40), size=40, seed=1)
    a = np.asarray(view_transform(0, 1)(img, "ab" * 16))
    assert a.shape == (40, 40, 3)
    assert np.array_equal(a, np.asarray(view_transform(0, 1)(img, "ab" * 16)))
    for other in (view_transform(1, 1)(img, "ab" * 16), view_transform(0, 2)(img, "ab" * 16),
                  view_transform(0, 1)(img, "cd" * 16)):
        assert not np.array_equal(a, np.asarray(other))
    assert not np.array_equal(a, np.asarray(img))
    flips = [augment_view(img, np.random.default_rng(s)) for s in range(20)]
    assert len({np.asarray(f).tobytes() for f in flips}) == 20


def test_points_are_marked_written_and_scored_on_the_originals(folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    res = cluster_images(folder, **FAST, augment=2, out=out, cache_dir=tmp_path / "c")
    n = 12
    t = res.table().to_pydict()
    assert len(t["path"]) == 3 * n and t["augmented"] == [False] * n + [True] * (2 * n)
    assert t["view"] == [0] * n + [1] * n + [2] * n and t["source"][n:2 * n] == t["path"][:n]
    assert t["label"][n:2 * n] == t["label"][:n]  # a view keeps its image's label
    for row in (n, 2 * n + 5):  # the PNG is exactly the view that was embedded
        src = t["source"][row]
        want = view_transform(0, t["view"][row])(load_image(src), file_hash(src))
        assert np.array_equal(np.asarray(load_image(t["path"][row])), np.asarray(want))
    aug = res.metrics["augment"]
    assert aug["n_views"] == 2 and aug["n_original"] == n and aug["n_points"] == 3 * n
    assert aug["external_originals"]["acc"] == 1.0 and res.metrics["n_images"] == 3 * n
    assert (out / "plots" / "augmentations.png").is_file()
    from imgclust.report.builder import report_payload

    payload, _ = report_payload(out)
    assert payload["augmented"] == t["augmented"] and payload["augment"]["used_as"] == "both"
    assert payload["source"][n] == t["path"][0]
    again = recluster(out, method="agglomerative", k=3, out=tmp_path / "again")
    assert again.table().column("augmented").to_pylist() == t["augmented"]

    from imgclust.encoders.pixels import PixelEncoder

    def boom(self, images):
        raise AssertionError("re-encoded a cached view")

    monkeypatch.setattr(PixelEncoder, "encode_images", boom)  # every view is in its own store now
    cached = cluster_images(folder, **FAST, augment=2, cache_dir=tmp_path / "c")
    assert np.array_equal(cached.embeddings, res.embeddings)
    assert cached.paths[n].endswith("#view1")  # no run directory: virtual paths


@pytest.mark.parametrize("mode", ["views", "both", "points"])
def test_heads_get_the_views(folder, tmp_path, mode):
    est = ViewRecorder()
    res = cluster_images(folder, encoder="pixels", labels="folder", k=3, map="pca", method=est, augment=2,
                         augment_as=mode, reduce="pca", n_components=5, cache_dir=tmp_path / "c")
    model = res.model
    n = 12
    if mode == "points":
        assert model.views_ is None and len(model.X_) == 3 * n
        return
    assert res.config["views_used"] is True and res.metrics["augment"]["views_used_by_method"] is True
    if mode == "views":
        assert model.views_.shape == (n, 2, 5) and len(model.X_) == n
        assert len(res.table()) == n and "augmented" not in res.table().column_names
    else:  # every row's views are the other rows of its image, in the same reduced space
        X, V = model.X_, model.views_
        assert V.shape == (3 * n, 2, 5)
        assert np.allclose(V[0], X[[n, 2 * n]]) and np.allclose(V[n], X[[0, 2 * n]])


def test_scan_trains_with_views(folder, tmp_path):
    res = cluster_images(folder, encoder="pixels", labels="folder", k=3, map="pca", method="scan", augment=1,
                         augment_as="views", cache_dir=tmp_path / "c",
                         method_params={"epochs": 2, "min_steps": 20, "n_heads": 2, "self_label": False})
    assert res.config["views_used"] is True and res.metrics["augment"]["external_originals"]["acc"] > 0.5


def test_cli_augment_and_its_errors(folder, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["run", str(folder), "-e", "pixels", "--labels", "folder", "-k", "3", "--map", "pca",
                              "-m", "agglomerative", "--augment", "1", "--cache-dir", str(tmp_path / "c"),
                              "-o", str(out), "-q"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "1 augmented view(s) per image" in res.output and "on the 12 originals" in res.output
    assert len(list((out / "augmented").glob("*.png"))) == 12
    bad = runner.invoke(app, ["run", str(folder), "-e", "pixels", "--augment", "1", "--augment-as", "twice"])
    assert bad.exit_code != 0 and "unknown --augment-as 'twice'" in bad.output and "Traceback" not in bad.output
