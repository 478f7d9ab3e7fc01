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


# ------------------------------------------------------------------ names, comparison, training, probe

HOSTILE_ENCODER = "<img src=x onerror=alert(1)>"
HOSTILE_CLUSTER_NAME = "</script><b>cat</b>"
HOSTILE_ERROR = "weights not available offline: <script>alert(2)</script>"


def decorate_run(run_dir: Path) -> dict:
    """Write what ``imgclust name`` / ``compare`` / ``probe`` and a SCAN head would add, then rebuild.

    The comparison has three rows: this run (``pixels``), an encoder with a hostile name whose run
    directory (also hostile-named, next to this one) holds a small placeholder report, and a row that
    failed with a hostile error text. Returns what was written, for the assertions.
    """
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ids = sorted(c for c in {int(c) for c in metrics["confusion"]["clusters"]} if c != -1)
    scores = {str(c): [{"name": HOSTILE_CLUSTER_NAME if c == ids[0] else f"name {c}", "score": 0.62},
                       {"name": "tabby cat", "score": 0.21}, {"name": "tiger cat", "score": 0.08},
                       {"name": "lynx", "score": 0.05}] for c in ids}
    metrics["cluster_names"] = {c: v[0]["name"] for c, v in scores.items()}
    metrics["cluster_name_scores"] = scores
    metrics["naming"] = {"method": "text", "encoder": "clip-vit-b-32", "vocab": "general", "vocab_size": 1234,
                         "templates": ["a photo of a {}.", "a drawing of a {}."], "contrast": 0.5,
                         "temperature": 100.0, "top": 4, "score": "mean over members x of softmax ..."}
    metrics["training"] = {"method": "scan", "best_head": 2, "epochs": 6,
                           "loss_history": [2.1, 1.6, 1.3, 1.15, 1.08, 1.05]}
    metrics["probe"] = {"acc": 0.97, "acc_std": 0.02, "cv": 5, "n": 36, "n_classes": 3}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))

    other = run_dir.parent / HOSTILE_ENCODER
    other.mkdir(exist_ok=True)
    (other / "report.html").write_text("<!doctype html><title>other encoder</title><p id=other>other run</p>")
    compare = {
        "config": {"encoders": ["pixels", HOSTILE_ENCODER, "clip-vit-b-32"], "method": "kmeans", "k": 3,
                   "reduce": "pca", "n_components": 50, "seeds": 3, "labels": "folder"},
        "columns": [{"key": "encoder", "header": "encoder", "higher_is_better": None},
                    {"key": "dim", "header": "dim", "higher_is_better": None},
                    {"key": "silhouette", "header": "silhouette", "higher_is_better": True},
                    {"key": "davies_bouldin", "header": "Davies-Bouldin", "higher_is_better": False},
                    {"key": "acc", "header": "accuracy", "higher_is_better": True},
                    {"key": "nmi", "header": "NMI", "higher_is_better": True}],  # no row has nmi: dropped
        "rows": [
            {"encoder": "pixels", "dim": 6912, "silhouette": 0.41, "silhouette_std": 0.01,
             "davies_bouldin": 0.9, "acc": 0.95, "run_dir": str(run_dir)},
            {"encoder": HOSTILE_ENCODER, "dim": 512, "silhouette": 0.55, "silhouette_std": 0.02,
             "davies_bouldin": 1.2, "acc": 0.99, "run_dir": str(other)},
            {"encoder": "clip-vit-b-32", "error": HOSTILE_ERROR},
        ],
        "best": {"silhouette": HOSTILE_ENCODER, "davies_bouldin": "pixels", "acc": HOSTILE_ENCODER},
        "seconds": 12.5,
    }
    (run_dir / "compare.json").write_text(json.dumps(compare, indent=2))
    build_report(run_dir)
    return {"scores": scores, "compare": compare, "other": other}


@pytest.fixture(scope="module")
def decorated(tmp_path_factory):
    run_dir, _, result = make_run(tmp_path_factory.mktemp("decorated"), k=3, per_class=6, report=False, plots=False)
    written = decorate_run(run_dir)
    return run_dir, result, written


def test_report_names_compare_training_probe_payload(decorated):
    run_dir, result, written = decorated
    html = (run_dir / "report.html").read_text()
    # Hostile strings only ever appear JSON-escaped inside the data block.
    for raw in (HOSTILE_ENCODER, HOSTILE_CLUSTER_NAME, HOSTILE_ERROR, "<b>cat</b>", "<script>alert(2)"):
        assert raw not in html
    assert HOSTILE_ENCODER.replace("<", "\\u003c").replace(">", "\\u003e") in html
    assert len(re.findall(r"<script>", html)) == 1
    d = page_json(html, "imgclust-data")

    # Names with scores: top 3 per cluster, best first; the best name is the cluster's name.
    named = [c for c in d["clusters"] if c["id"] != -1]
    assert named and all(len(c["name_scores"]) == 3 for c in named)
    for c in named:
        assert c["name_scores"] == written["scores"][str(c["id"])][:3]
        assert d["names"][str(c["id"])] == c["name"] == c["name_scores"][0]["name"]
    assert HOSTILE_CLUSTER_NAME in d["names"].values()
    assert d["naming"] == {"method": "text", "encoder": "clip-vit-b-32", "vocab": "general", "vocab_size": 1234,
                           "contrast": 0.5, "temperature": 100.0, "top": 4, "n_templates": 2,
                           "score": "mean over members x of softmax ..."}

    # Training curve and the probe reference.
    assert d["training"]["method"] == "scan" and d["training"]["loss_history"][0] == 2.1
    assert d["training"]["best_head"] == 2
    assert d["probe"]["accuracy"] == 0.97 and d["probe"]["accuracy_std"] == 0.02

    # The comparison: columns with a value only, rows, failures apart, best per score.
    cp = d["compare"]
    assert [c["key"] for c in cp["columns"]] == ["encoder", "dim", "silhouette", "davies_bouldin", "acc"]
    assert [r["encoder"] for r in cp["rows"]] == ["pixels", HOSTILE_ENCODER]
    assert [r["this"] for r in cp["rows"]] == [True, False]
    assert cp["failed"] == [{"encoder": "clip-vit-b-32", "error": HOSTILE_ERROR, "this": False}]
    assert cp["best"] == written["compare"]["best"]
    assert cp["rows"][1]["values"]["silhouette"] == 0.55 and cp["rows"][1]["std"] == {"silhouette": 0.02}
    assert cp["rows"][0]["values"]["dim"] == 6912
    # Links are relative, percent-encoded file paths (no scheme can survive: ':' would be %3A).
    for r in cp["rows"]:
        href = r["href"]
        assert href and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", href) and not href.startswith("/")
        assert "<" not in href and " " not in href
    assert cp["rows"][0]["href"] == "report.html"
    from urllib.parse import unquote

    target = (run_dir / unquote(cp["rows"][1]["href"])).resolve()
    assert target == (written["other"] / "report.html").resolve() and target.is_file()


def test_report_links_survive_moving_the_comparison(tmp_path, decorated):
    """Recorded run_dir paths that no longer exist: the sibling folder of the same name is linked."""
    run_dir, _, written = decorated
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved / "run")
    shutil.copytree(written["other"], moved / written["other"].name)
    from imgclust.report.sections import compare_payload

    cp = compare_payload(moved / "run", "pixels")
    from urllib.parse import unquote

    assert (moved / "run" / unquote(cp["rows"][1]["href"])).resolve() == (moved / written["other"].name
                                                                         / "report.html").resolve()
    # A row whose directory exists nowhere gets no link, and a javascript: run_dir is never a link.
    comp = json.loads((moved / "run" / "compare.json").read_text())
    comp["rows"][1]["run_dir"] = "javascript:alert(1)"
    (moved / "run" / "compare.json").write_text(json.dumps(comp))
    cp = compare_payload(moved / "run", "pixels")
    assert cp["rows"][1]["href"] is None
    # A broken compare.json is ignored.
    (moved / "run" / "compare.json").write_text("{not json")
    assert compare_payload(moved / "run", "pixels") is None


def test_report_without_extras_has_none(run):
    run_dir, _, _ = run
    d = page_json((run_dir / "report.html").read_text(), "imgclust-data")
    assert d["compare"] is None and d["training"] is None and d["probe"] is None and d["naming"] is None
    assert all("name_scores" not in c for c in d["clusters"])


def test_report_names_from_the_table_column(tmp_path):
    """Names in clusters.parquet's cluster_name column only (null for noise) still reach the page."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_dir, _, _ = make_run(tmp_path, k=3, per_class=4, report=False, plots=False)
    t = pq.read_table(run_dir / "clusters.parquet")
    labels = t.column("cluster").to_pylist()
    labels[0] = -1
    t = t.set_column(t.column_names.index("cluster"), "cluster", pa.array(labels))
    names = pa.array([None if c == -1 else f"thing {c}" for c in labels], pa.string())
    pq.write_table(t.append_column("cluster_name", names), run_dir / "clusters.parquet")
    d = page_json(build_report(run_dir).read_text(), "imgclust-data")
    assert d["names"] == {str(c): f"thing {c}" for c in set(labels) if c != -1}
