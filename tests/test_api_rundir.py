"""The Python API end to end and the run-directory contract it writes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import imgclust
from conftest import CLASSES, is_png, make_image, write_image_folder
from imgclust.errors import ImgclustError
from imgclust.pipeline.sources import ImageRecord

pytestmark = pytest.mark.usefixtures("limit_threads")

XSS_NAME = "<img src=x onerror=alert(1)>.png"
BAD_FILES = {"empty.png": "empty file", "notes.jpg": "not an image", "cut.png": "truncated or corrupt image"}


def _make_dataset(root: Path) -> Path:
    """3 classes x 10 images in class folders, one more (hostile file name) red circle, 3 bad files."""
    write_image_folder(root, per_class=10)
    make_image(CLASSES["red_circles"][0], "circle", seed=777).save(root / "red_circles" / XSS_NAME)
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not a jpeg")
    good = (root / "red_circles" / "000.png").read_bytes()
    (root / "cut.png").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("data") / "images")


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    """One full run (plots + report) shared by the contract tests below."""
    base = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            mp.setenv("IMGCLUST_CACHE", str(base / "default-cache"))
            result = imgclust.cluster_images(dataset, encoder="pixels", k=3, labels="folder", map="pca",
                                             out=base / "run", cache_dir=base / "cache")
    return result, base / "run", base


def test_result_object(run):
    result, _, _ = run
    assert len(result.records) == 31 and result.embeddings.shape == (31, 32 * 32 * 3)
    assert result.n_clusters == 3 and sorted(set(result.labels.tolist())) == [0, 1, 2]
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    # Each true class is exactly one cluster.
    by_class = {}
    for r, lab in zip(result.records, result.labels):
        by_class.setdefault(r.label, set()).add(int(lab))
    assert sorted(by_class) == sorted(CLASSES)
    assert all(len(v) == 1 for v in by_class.values())
    assert len(set.union(*by_class.values())) == 3
    assert result.timings["n_encoded"] == 31 and result.timings["n_cached"] == 0


def test_clusters_table_parquet_and_csv(run, dataset):
    result, out, _ = run
    pt = pq.read_table(out / "clusters.parquet").to_pandas()
    csv = pd.read_csv(out / "clusters.csv")
    for df in (pt, csv):
        assert {"path", "cluster", "x", "y", "distance", "label"} <= set(df.columns)
        assert len(df) == 31
        assert pd.api.types.is_integer_dtype(df["cluster"])
        assert set(df["cluster"]) == {0, 1, 2}
        assert df["distance"].notna().all() and (df["distance"] >= 0).all()
        assert set(df["label"]) == set(CLASSES)
    assert pq.read_schema(out / "clusters.parquet").field("cluster").type == "int64"
    assert list(pt["path"]) == list(csv["path"]) == result.paths
    assert list(pt["cluster"]) == list(csv["cluster"]) == result.labels.tolist()
    np.testing.assert_allclose(pt["x"], csv["x"], rtol=1e-5)
    np.testing.assert_allclose(pt[["x", "y"]].to_numpy(), result.coords, rtol=1e-5)
    assert str(dataset / "red_circles" / XSS_NAME) in set(pt["path"])
    # the image of each row is the file it names: label = parent folder
    assert all(Path(p).parent.name == lab for p, lab in zip(pt["path"], pt["label"]))


def test_metrics_json(run, dataset):
    _, out, _ = run
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_images"] == 31 and m["n_clusters"] == 3 and m["n_noise"] == 0
    assert sorted((Path(s["path"]).name, s["reason"]) for s in m["skipped"]) == sorted(BAD_FILES.items())
    assert all(set(s) == {"path", "reason"} for s in m["skipped"])
    assert set(m["internal"]) == {"silhouette", "calinski_harabasz", "davies_bouldin"}
    assert m["internal"]["silhouette"] > 0.3 and m["internal"]["davies_bouldin"] > 0
    ext = m["external"]
    assert {"acc", "nmi", "ari"} <= set(ext)
    assert ext["acc"] == 1.0
    assert ext["nmi"] == pytest.approx(1.0) and ext["ari"] == pytest.approx(1.0)
    assert ext["top5_neighbor_acc"] == pytest.approx(1.0)
    assert sorted(m["cluster_sizes"].values()) == [10, 10, 11]
    conf = m["confusion"]
    assert conf["classes"] == sorted(CLASSES) and conf["clusters"] == [0, 1, 2]
    assert sorted(sorted(row) for row in conf["matrix"]) == [[0, 0, 10], [0, 0, 10], [0, 0, 11]]
    assert m["n_labelled"] == 31


def test_run_json(run):
    _, out, _ = run
    r = json.loads((out / "run.json").read_text())
    cfg = r["config"]
    assert cfg["encoder"] == "pixels" and cfg["method"] == "kmeans" and cfg["k"] == 3
    assert cfg["map"] == "pca" and cfg["labels"] == "folder" and cfg["embedding_dim"] == 3072
    assert cfg["encoder_fingerprint"].startswith("pixels-")
    v = r["versions"]
    assert {"python", "numpy", "imgclust", "pillow"} <= set(v)
    t = r["timings"]
    assert t["embed_images_per_s"] > 0 and t["n_encoded"] == 31
    assert {"embed", "reduce", "cluster", "map", "total", "write"} <= set(t)
    assert all(t[key] >= 0 for key in ("embed", "cluster", "total"))


def test_plots_are_pngs(run):
    _, out, _ = run
    for name in ("cluster_map", "examples", "confusion"):
        assert is_png(out / "plots" / f"{name}.png"), name
    assert not (out / "plots" / "k_sweep.png").exists()  # only with k="auto"


def test_embeddings_and_centers_saved(run):
    result, out, _ = run
    np.testing.assert_array_equal(np.load(out / "embeddings.npy"), result.embeddings)
    assert np.load(out / "centers.npy").shape == (3, result.features.shape[1])


def test_report_offline_and_escaped(run):
    _, out, _ = run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert len(html) > 1000
    # Nothing is loaded from the network: no http(s) or protocol-relative src/href/url()/@import.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "@import" not in html
    # The hostile file name never appears as markup ...
    assert "<img src=x onerror" not in html
    assert "onerror=alert(1)>" not in html
    # ... but it is in the page, escaped (as HTML entities or as JSON \u003c escapes) ...
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html or \
        "\\u003cimg src=x onerror=alert(1)\\u003e.png" in html
    # ... and data blocks decode back to the exact name.
    blocks = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S)
    if blocks:
        decoded = " ".join(json.dumps(json.loads(b), ensure_ascii=False) for b in blocks)
        assert XSS_NAME in decoded
    # And the bad files are listed (the page carries them as data).
    for name in BAD_FILES:
        assert name in html


def test_rerun_uses_cache_and_is_identical(run, dataset):
    result, _, base = run
    again = imgclust.cluster_images(dataset, encoder="pixels", k=3, labels="folder", map="pca",
                                    cache_dir=base / "cache")
    assert again.timings["n_encoded"] == 0 and again.timings["n_cached"] == 31
    np.testing.assert_array_equal(again.embeddings, result.embeddings)
    np.testing.assert_array_equal(again.labels, result.labels)


def test_seeds_give_std(run, dataset, tmp_path):
    _, _, base = run
    res = imgclust.cluster_images(dataset, encoder="pixels", k=3, labels="folder", map="pca", seeds=3,
                                  cache_dir=base / "cache", out=tmp_path / "seeds", plots=False, report=False)
    m = json.loads((tmp_path / "seeds" / "metrics.json").read_text())
    assert m["seeds"] == 3 and res.metrics["seeds"] == 3
    for group, keys in (("internal", ("silhouette", "calinski_harabasz", "davies_bouldin")),
                        ("external", ("acc", "nmi", "ari"))):
        for key in keys:
            assert f"{key}_std" in m[group], (group, key)
            assert m[group][f"{key}_std"] == pytest.approx(0.0, abs=1e-9)  # easy data: every seed agrees
    assert m["external"]["acc"] == 1.0
    assert not (tmp_path / "seeds" / "plots").exists() and not (tmp_path / "seeds" / "report.html").exists()


def test_k_auto(run, dataset, tmp_path):
    _, _, base = run
    res = imgclust.cluster_images(dataset, encoder="pixels", k="auto", labels="folder", map="pca",
                                  cache_dir=base / "cache", out=tmp_path / "auto", report=False)
    assert is_png(tmp_path / "auto" / "plots" / "k_sweep.png")
    m = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    sw = m["k_sweep"]
    assert sw["best_k"] == 3 and m["n_clusters"] == 3 and res.config["k"] == 3
    assert sw["ks"] == list(range(2, 8))  # 2 .. sqrt(2 * 31)
    assert len(sw["inertia"]) == len(sw["silhouette"]) == len(sw["ks"])
    assert all(v is not None for v in sw["inertia"] + sw["silhouette"])
    assert max(sw["silhouette"]) == sw["silhouette"][sw["ks"].index(3)]
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["config"]["k_requested"] == "auto"


def test_recluster_without_images(tmp_path):
    data = _make_dataset(tmp_path / "images")
    cache = tmp_path / "cache"
    first = imgclust.cluster_images(data, encoder="pixels", k=3, labels="folder", map="pca", cache_dir=cache,
                                    out=tmp_path / "run", plots=False, report=False)
    shutil.move(str(data), str(tmp_path / "moved-away"))  # the images are gone now
    assert not data.exists()
    res = imgclust.recluster(tmp_path / "run", method="kmedoids", k=3, out=tmp_path / "re")
    assert res.config["method"] == "kmedoids" and res.config["from_run"] == str(tmp_path / "run")
    assert res.metrics["external"]["acc"] == 1.0
    assert res.metrics["skipped"] == first.metrics["skipped"]
    np.testing.assert_array_equal(res.embeddings, first.embeddings)
    np.testing.assert_allclose(res.coords, first.coords)  # the map is reused, not recomputed
    table = pq.read_table(tmp_path / "re" / "clusters.parquet").to_pydict()
    assert table["path"] == first.paths and table["label"] == first.true_labels
    assert (tmp_path / "re" / "report.html").exists()
    assert is_png(tmp_path / "re" / "plots" / "cluster_map.png")
    # kmedoids centres are real rows of the clustering input
    centers = np.load(tmp_path / "re" / "centers.npy")
    assert all(np.isclose(res.features, c, atol=1e-5).all(1).any() for c in centers)


def test_cluster_embeddings_directly(blobs):
    X, y = blobs
    recs = [ImageRecord(f"p{i}.png", str(lab)) for i, lab in enumerate(y)]
    res = imgclust.cluster_embeddings(X, recs, method="agglomerative", k=4, map="pca", reduce="none")
    assert res.metrics["external"]["acc"] == 1.0 and res.metrics["internal_space"] == "input"
    assert res.coords.shape == (120, 2) and res.distances.shape == (120,)
    res = imgclust.cluster_embeddings(X, recs, method="hdbscan", k=None, map="pca")
    assert res.n_clusters == 4 and res.config["k"] is None


def test_api_user_errors(tmp_path, dataset):
    with pytest.raises(ImgclustError, match="input not found"):
        imgclust.cluster_images(tmp_path / "nope", encoder="pixels", k=2, map="pca", cache_dir=tmp_path)
    with pytest.raises(ImgclustError, match=r"k=99 is larger than the number of images \(34\)"):
        imgclust.cluster_images(dataset, encoder="pixels", k=99, map="pca", cache_dir=tmp_path)
    with pytest.raises(ImgclustError, match="unknown method 'nope'"):
        imgclust.cluster_images(dataset, encoder="pixels", method="nope", k=3, map="pca", cache_dir=tmp_path)
    with pytest.raises(ImgclustError, match="unknown encoder 'nope'"):
        imgclust.cluster_images(dataset, encoder="nope", k=3, map="pca", cache_dir=tmp_path)
    with pytest.raises(ImgclustError, match="not an imgclust run directory"):
        imgclust.recluster(tmp_path, k=3)
    assert not (tmp_path / "embeddings").exists()  # every error came before any embedding work


@pytest.mark.parametrize("map_", ["pca", "tsne"])
def test_two_images_k2(tmp_path, map_):
    """The smallest valid input: 2 images, k=2 (the 2-D map needs 2 components from 2 points)."""
    d = tmp_path / "two"
    d.mkdir()
    make_image((255, 0, 0), seed=1).save(d / "a.png")
    make_image((0, 0, 255), "square", seed=2).save(d / "b.png")
    res = imgclust.cluster_images(d, encoder="pixels", k=2, map=map_, cache_dir=tmp_path / "c")
    assert sorted(res.labels.tolist()) == [0, 1] and res.coords.shape == (2, 2)
    assert res.table().num_rows == 2


def test_efficientnet_real_encoder(tmp_path):
    """The real offline default: 1280-d, unit-norm vectors; same colour+shape images are neighbours."""
    root = tmp_path / "tiny"
    write_image_folder(root, per_class=4, size=48)
    res = imgclust.embed_images(root, encoder="efficientnet-lite0", labels="folder", device="cpu",
                                cache_dir=tmp_path / "cache")
    assert res.embeddings.shape == (12, 1280) and res.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)
    assert res.n_encoded == 12 and res.encoder.dim == 1280
    sims = res.embeddings @ res.embeddings.T
    np.fill_diagonal(sims, -1)
    labels = [r.label for r in res.records]
    assert all(labels[i] == labels[j] for i, j in enumerate(sims.argmax(1)))
    again = imgclust.embed_images(root, encoder="efficientnet-lite0", device="cpu", cache_dir=tmp_path / "cache")
    assert again.n_encoded == 0 and again.n_cached == 12
    np.testing.assert_array_equal(again.embeddings, res.embeddings)
