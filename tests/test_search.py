"""Search a run: text -> image with the fine-tuned tiny CLIP, image -> image with any encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgclust.errors import ImgclustError
from imgclust.language.search import search_run


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    pytest.importorskip("transformers")
    from language_fixtures import finetuned_shapes

    return finetuned_shapes(tmp_path_factory)


def _label(path: str) -> str:
    return Path(path).parent.name.replace("_", " ")


@pytest.mark.parametrize("query", ["a red circle", "a blue square", "a yellow circle", "a green square"])
def test_text_search_returns_the_described_shapes_first(shapes, query):
    results = search_run(shapes["run"], query, top=10, device="cpu")
    assert len(results) == 10
    assert [_label(p) for p, _ in results] == [query[2:]] * 10, results
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_text_search_with_prompt_templates(shapes):
    results = search_run(shapes["run"], "red circle", top=5, device="cpu", templates=["a {}"])
    assert [_label(p) for p, _ in results] == ["red circle"] * 5


def test_image_search_uses_the_stored_embedding_and_skips_the_query(shapes):
    from imgclust.rundir import load_run

    run = load_run(shapes["run"])
    paths = run["table"].column("path").to_pylist()
    query = next(p for p in paths if _label(p) == "blue circle")
    results = search_run(shapes["run"], query, top=10, device="cpu")
    assert query not in [p for p, _ in results]
    assert sum(_label(p) == "blue circle" for p, _ in results) >= 9, results
    with_self = search_run(shapes["run"], query, top=3, device="cpu", include_self=True)
    assert with_self[0][0] == query and with_self[0][1] == pytest.approx(1.0, abs=1e-5)


def test_image_search_with_a_new_image(shapes, tmp_path):
    from language_fixtures import draw_shape

    path = tmp_path / "new_yellow_square.png"
    draw_shape("yellow", "square", np.random.default_rng(42)).save(path)
    results = search_run(shapes["run"], str(path), top=5, device="cpu")
    assert [_label(p) for p, _ in results] == ["yellow square"] * 5, results


def test_search_on_a_run_without_text_tower(tmp_path):
    from imgclust import cluster_images
    from language_fixtures import make_shapes

    make_shapes(tmp_path / "imgs", per_class=3, seed=0, folders=True)
    cluster_images(str(tmp_path / "imgs"), encoder="pixels", k=4, map="pca", cache_dir=tmp_path / "cache",
                   out=tmp_path / "run", plots=False, report=False)
    with pytest.raises(ImgclustError, match="text search needs an encoder with a text tower"):
        search_run(tmp_path / "run", "a red circle")
    query = str(next((tmp_path / "imgs" / "red_circle").glob("*.png")))
    results = search_run(tmp_path / "run", query, top=3)  # image -> image works with any encoder
    assert len(results) == 3 and query not in [p for p, _ in results]
    with pytest.raises(ImgclustError, match="--top"):
        search_run(tmp_path / "run", query, top=0)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ImgclustError, match="not an image"):
        search_run(tmp_path / "run", str(bad))


def test_cli_search(shapes):
    from typer.testing import CliRunner

    from imgclust.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["search", str(shapes["run"]), "a red circle", "--top", "5", "--device", "cpu",
                              "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(_label(r["path"]) == "red circle" for r in rows)
    assert len({r["cluster"] for r in rows}) == 1
    res = runner.invoke(app, ["search", str(shapes["run"]), "a green circle", "-n", "3", "--device", "cpu"])
    assert res.exit_code == 0 and "top 3 for 'a green circle'" in res.output and "…" not in res.output
    res = runner.invoke(app, ["search", str(shapes["run"] / "missing"), "x"])
    assert res.exit_code == 2 and "not an imgclust run directory" in res.output


def test_relative_hf_dir_is_found_from_another_working_directory(shapes, tmp_path, monkeypatch):
    """run.json keeps the encoder name as typed (hf:model) and its absolute weights directory."""
    from imgclust import cluster_images

    monkeypatch.chdir(shapes["root"])
    cluster_images(str(shapes["heldout"]), encoder="hf:model", k=8, map="pca", device="cpu",
                   cache_dir=tmp_path / "cache", out=tmp_path / "run", plots=False, report=False)
    monkeypatch.chdir(tmp_path)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = search_run(tmp_path / "run", "a blue square", top=5, device="cpu")
    assert not [w for w in caught if "differs from the one" in str(w.message)]  # same fingerprint
    assert [_label(p) for p, _ in results] == ["blue square"] * 5
