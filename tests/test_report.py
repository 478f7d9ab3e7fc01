"""report.html: self-contained, escaped, data complete (the browser test checks it runs)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgclust.report import build_report
from imgclust.report.builder import make_thumbnails, script_json

from run_fixtures import HOSTILE_NAME, make_run


def page_json(html: str, element_id: str):
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert m, element_id
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    run_dir, images, result = make_run(tmp, k=3, report=True, plots=True)
    # A skipped file shows up in the report too.
    return run_dir, images, result


def test_script_json_cannot_break_out_of_its_element():
    nasty = ["</script><script>alert(1)</script>", "<!--", HOSTILE_NAME, "a & b", "\u2028"]
    text = script_json({"paths": nasty})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"paths": nasty}


def test_report_is_self_contained_and_escaped(run):
    run_dir, images, result = run
    html = (run_dir / "report.html").read_text()
    # Nothing is fetched: no URLs, no external scripts, styles or fonts.
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:|//)", html)
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # the inline SVG placeholder's xmlns
    assert "https://" not in html
    # The hostile file name never appears raw, only JSON-escaped inside the data block.
    assert HOSTILE_NAME not in html
    assert HOSTILE_NAME.replace("<", "\\u003c").replace(">", "\\u003e") in html
    assert not re.search(r"\.(?:inner|outer)HTML|insertAdjacentHTML|document\.write|eval\(", html)
    # The CSP admits exactly the page's own script.
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html
    assert "default-src 'none'" in html


def test_report_data(run):
    run_dir, images, result = run
    html = (run_dir / "report.html").read_text()
    d = page_json(html, "imgclust-data")
    thumbs = page_json(html, "imgclust-thumbs")
    n = len(result.paths)
    assert d["n"] == n and d["paths"] == result.paths and d["cluster"] == result.labels.tolist()
    assert HOSTILE_NAME in [Path(p).name for p in d["paths"]]
    # One thumbnail per image, each embedded exactly once, small JPEGs.
    assert len(thumbs) == n and d["thumb"] is None
    for t in thumbs[:5]:
        assert base64.b64decode(t)[:2] == b"\xff\xd8"
        assert html.count(t) == 1
    # Precomputed neighbours: k per image, never itself, most similar first.
    k = d["k"]
    assert k == 10 and len(d["nn"]) == len(d["nn_sim"]) == n * k
    nn = np.asarray(d["nn"]).reshape(n, k)
    sims = np.asarray(d["nn_sim"]).reshape(n, k)
    assert not (nn == np.arange(n)[:, None]).any()
    assert (np.diff(sims, axis=1) <= 0).all()
    # Galleries: every image in exactly one cluster list, closest to the centre first.
    seen = sorted(i for c in d["clusters"] for i in c["order"])
    assert seen == list(range(n))
    for c in d["clusters"]:
        dist = [result.distances[i] for i in c["order"]]
        assert dist == sorted(dist) and c["size"] == len(c["order"])
        assert 0 < c["cohesion"] <= 1 and 0 < c["purity"] <= 1
    # Map coordinates are quantised into 0..10000 and keep the layout.
    assert min(d["x"]) == 0 and max(d["x"]) == 10000
    assert np.corrcoef(d["x"], result.coords[:, 0])[0, 1] > 0.999
    # Scores, labels, confusion, plots and configuration are all there.
    assert set(d["metrics"]["internal"]) >= {"silhouette", "davies_bouldin"}
    assert d["metrics"]["external"]["acc"] > 0.9
    assert sorted(d["confusion"]["classes"]) == ["blue", "green", "red"]
    assert {"cluster_map", "examples", "confusion"} <= set(d["plots"])
    assert d["config"]["encoder"] == "pixels" and d["label"][0] in ("blue", "green", "red")


def test_scores_with_std_and_skipped_files(tmp_path):
    run_dir, images, _ = make_run(tmp_path, k=3, per_class=6, report=False, plots=False)
    (images / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    from imgclust.api import cluster_images

    res = cluster_images([str(images)], encoder="pixels", k=3, seeds=3, labels="folder", map="pca",
                         cache_dir=tmp_path / "cache", out=tmp_path / "run2", plots=False, report=True)
    html = (tmp_path / "run2" / "report.html").read_text()
    d = page_json(html, "imgclust-data")
    assert "silhouette_std" in d["metrics"]["internal"] and d["metrics"]["seeds"] == 3
    assert [s["path"] for s in d["skipped"]] == [str(images / "red" / "broken.png")]
    assert len(res.paths) == d["n"]


def test_thumbnails_are_shared_and_never_upscaled(tmp_path):
    from PIL import Image

    a = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(a)
    shutil.copy(a, tmp_path / "b.png")
    Image.new("RGB", (300, 150), (10, 10, 200)).save(tmp_path / "c.png")
    (tmp_path / "d.png").write_bytes(b"nope")
    paths = [str(tmp_path / n) for n in ("a.png", "b.png", "c.png", "d.png")]
    thumbs, index = make_thumbnails(paths, ["h1", "h1", "h2", "h3"], size=64)
    assert index == [0, 0, 1, 2] and len(thumbs) == 3
    import io

    assert Image.open(io.BytesIO(base64.b64decode(thumbs[0]))).size == (32, 32)
    assert Image.open(io.BytesIO(base64.b64decode(thumbs[1]))).size == (64, 32)
    assert thumbs[2] is None  # unreadable: the page shows a placeholder


def test_report_without_embeddings_and_with_noise(tmp_path):
    run_dir, _, result = make_run(tmp_path, k=3, per_class=5, report=False, plots=False)
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(run_dir / "clusters.parquet")
    labels = np.asarray(t.column("cluster").to_pylist())
    labels[:3] = -1  # as HDBSCAN marks noise
    pq.write_table(t.set_column(t.column_names.index("cluster"), "cluster", pa.array(labels)),
                   run_dir / "clusters.parquet")
    (run_dir / "embeddings.npy").unlink()
    html = build_report(run_dir).read_text()
    d = page_json(html, "imgclust-data")
    assert d["k"] == 0 and d["nn"] == []
    assert d["clusters"][-1]["id"] == -1 and d["clusters"][-1]["size"] == 3  # noise listed last


def test_cli_report(run):
    from typer.testing import CliRunner

    from imgclust.cli import app

    run_dir, _, _ = run
    r = CliRunner().invoke(app, ["report", str(run_dir)])
    assert r.exit_code == 0 and "report.html" in r.output
