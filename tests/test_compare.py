"""Encoder comparison: same images, same reducer and clusterer, one row of scores per encoder."""

from __future__ import annotations

import json

import pytest

from imgclust.errors import ImgclustError
from imgclust.language.compare import compare_encoders, compare_markdown, encoder_slug


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    pytest.importorskip("transformers")
    from language_fixtures import finetuned_shapes

    return finetuned_shapes(tmp_path_factory)


def test_compare_pixels_random_and_finetuned_clip(shapes, tmp_path):
    """The ROCOv2 seed's experiment in miniature: pixels vs the random tiny CLIP vs its fine-tune."""
    finetuned = f"hf:{shapes['model']}"
    encoders = ["pixels", f"hf:{shapes['checkpoint']}", finetuned]
    rows = compare_encoders(str(shapes["heldout"]), encoders, k=8, labels="folder", device="cpu",
                            cache_dir=tmp_path / "cache", out=tmp_path / "cmp")
    assert [r["encoder"] for r in rows] == encoders
    by = {r["encoder"]: r for r in rows}
    for r in rows:
        assert r["n_images"] == 160 and r["n_clusters"] == 8 and r["k"] == 8
        assert {"silhouette", "calinski_harabasz", "davies_bouldin", "acc", "nmi", "ari"} <= set(r)
    assert by["pixels"]["dim"] == 3072 and by[finetuned]["dim"] == 32
    # Fine-tuning on captions is what separates the shapes.
    assert by[finetuned]["nmi"] > by["pixels"]["nmi"] + 0.2
    assert by[finetuned]["acc"] >= 0.9

    out = tmp_path / "cmp"
    data = json.loads((out / "compare.json").read_text())
    assert [r["encoder"] for r in data["rows"]] == encoders
    assert data["best"]["nmi"] == finetuned and data["config"]["method"] == "kmeans"
    assert data["config"]["k"] == 8 and data["config"]["labels"] == "folder"
    md = (out / "compare.md").read_text()
    assert md.count("\n| ") == 4 and "NMI" in md and f"**{by[finetuned]['nmi']:.4f}**" in md
    for r in rows:
        run = out / encoder_slug(r["encoder"])
        assert r["run_dir"] == str(run)
        assert (run / "clusters.parquet").exists() and (run / "report.html").exists()
        assert json.loads((run / "compare.json").read_text())["rows"] == data["rows"]


def test_compare_keeps_going_past_an_unavailable_encoder(shapes, tmp_path):
    rows = compare_encoders(str(shapes["heldout"]), "pixels, hf:/no/such/checkpoint", k=4, device="cpu",
                            cache_dir=tmp_path / "cache", out=None)
    assert rows[0]["encoder"] == "pixels" and "error" not in rows[0] and "nmi" not in rows[0]
    assert rows[1]["encoder"] == "hf:/no/such/checkpoint" and "not found" in rows[1]["error"]
    with pytest.raises(ImgclustError, match="no encoder could be compared"):
        compare_encoders(str(shapes["heldout"]), ["hf:/no/such/checkpoint"], k=4, out=None)
    with pytest.raises(ImgclustError, match="not found"):
        compare_encoders(str(shapes["heldout"]), ["hf:/no/such/checkpoint"], k=4, out=None, keep_going=False)


def test_compare_rejects_bad_inputs_before_embedding(tmp_path):
    with pytest.raises(ImgclustError, match="twice"):
        compare_encoders(str(tmp_path), ["pixels", "pixels"])
    with pytest.raises(ImgclustError, match="at least one"):
        compare_encoders(str(tmp_path), " , ")
    with pytest.raises(ImgclustError, match="input not found"):
        compare_encoders(str(tmp_path / "missing"), ["pixels"])
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ImgclustError, match="larger than the number of images"):
        compare_encoders(str(tmp_path), ["pixels"], k=5, out=None)


def test_markdown_and_slugs():
    rows = [{"encoder": "a", "dim": 2, "n_clusters": 3, "silhouette": 0.5, "davies_bouldin": 1.0, "nmi": 0.2},
            {"encoder": "b", "dim": 4, "n_clusters": 3, "silhouette": 0.25, "davies_bouldin": 0.5, "nmi": 0.4,
             "nmi_std": 0.01},
            {"encoder": "c", "error": "weights not available offline"}]
    md = compare_markdown(rows, title="t")
    line = {r["encoder"]: next(x for x in md.splitlines() if x.startswith(f"| {r['encoder']} "))
            for r in rows[:2]}
    assert md.startswith("## t") and "**0.4000 ± 0.0100**" in line["b"]
    assert "**0.5000**" in line["a"] and "**0.5000**" in line["b"]  # silhouette: higher wins; DB: lower wins
    assert "- `c`: weights not available offline" in md and "accuracy" not in md
    assert encoder_slug("hf:/x/y/my model/") == "hf-my-model" and encoder_slug("clip-vit-b-32") == "clip-vit-b-32"


def test_cli_compare(shapes, tmp_path):
    from typer.testing import CliRunner

    from imgclust.cli import app

    res = CliRunner().invoke(app, ["compare", str(shapes["heldout"]), "--encoders", f"pixels,hf:{shapes['model']}",
                                   "--k", "8", "--labels", "folder", "--out", str(tmp_path / "cmp"), "--device", "cpu",
                                   "--cache-dir", str(tmp_path / "cache"), "--no-report", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "pixels" in res.output and "NMI" in res.output and "compare.md" in res.output.replace("\n", "")
    assert (tmp_path / "cmp" / "compare.json").exists() and not (tmp_path / "cmp" / "pixels" / "report.html").exists()
    res = CliRunner().invoke(app, ["compare", str(shapes["heldout"]), "--encoders", "pixels,pixels"])
    assert res.exit_code == 2 and "twice" in res.output
