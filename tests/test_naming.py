"""Cluster naming: a fine-tuned tiny CLIP names shape clusters; EfficientNet's head names real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgclust.errors import ImgclustError
from imgclust.language.naming import (
    DEFAULT_TEMPLATES,
    contrastive_scores,
    imagenet_classes,
    load_vocab,
    name_clusters,
    prompt_embeddings,
)

CAT_CLASSES = {"tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    pytest.importorskip("transformers")
    from language_fixtures import finetuned_shapes

    return finetuned_shapes(tmp_path_factory)


def _majority(result) -> dict[int, str]:
    labels = np.asarray(result.true_labels)
    out = {}
    for c in sorted(set(result.labels.tolist())):
        vals, counts = np.unique(labels[result.labels == c], return_counts=True)
        out[int(c)] = str(vals[counts.argmax()]).replace("_", " ")
    return out


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- vocabularies ---------------------------------------------------------------------------


def test_builtin_vocabularies_ship_with_the_package():
    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[1], names[281], names[285], names[967], names[999]) == (
        "tench", "goldfish", "tabby cat", "Egyptian cat", "espresso", "toilet tissue")
    assert names[207] == "golden retriever" and names[409] == "analog clock" and names[954] == "banana"
    cifar = load_vocab("cifar100")
    assert len(cifar) == 100 and cifar[0] == "apple" and cifar[-1] == "worm" and "maple tree" in cifar
    general = load_vocab("general")
    assert len(general) >= 300 and {"cat", "dog", "car", "chest x-ray"} <= set(general)
    # load_vocab drops the two repeated ImageNet names (crane, maillot) case-insensitively.
    assert len(load_vocab("imagenet")) == 998 and load_vocab("IMAGENET")[0] == "tench"


def test_vocab_file_and_list(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("# my classes\nred circle\n\nblue square\nRed Circle\n")
    assert load_vocab(f) == ["red circle", "blue square"]
    assert load_vocab(["a", "b", "a"]) == ["a", "b"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ImgclustError, match="no names"):
        load_vocab(tmp_path / "empty.txt")
    with pytest.raises(ImgclustError, match="neither a file nor a built-in"):
        load_vocab("no-such-vocab")


# -- scoring --------------------------------------------------------------------------------


class _FakeTextEncoder:
    """Text vectors from a table: a stand-in for a CLIP text tower with fixed embeddings."""

    name = "fake-clip"
    has_text = True

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def fingerprint(self) -> str:
        return "fake"

    def encode_text(self, texts):
        out = []
        for t in texts:
            word = next(w for w in self.table if w in t)
            out.append(self.table[word])
        out = np.asarray(out, np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _synthetic_run(tmp_path: Path) -> Path:
    """Two tight clusters around the axes e0 and e1."""
    from imgclust.analyze import cluster_embeddings
    from imgclust.report import write_run

    rng = np.random.default_rng(0)
    X = np.concatenate([np.eye(5)[0] + rng.normal(0, 0.01, (20, 5)),
                        np.eye(5)[1] + rng.normal(0, 0.01, (20, 5))]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    res = cluster_embeddings(X, reduce="none", map="pca", k=2, config={"encoder": "fake-clip"})
    return write_run(res, tmp_path / "run", plots=True, report=False)


# Cosines to e0 / e1: "thing" 0.30 / 0.30 (a hub: the most similar word for every image),
# "alpha" 0.28 / 0.18 and "beta" 0.18 / 0.28 (a bit less similar, but each fits one cluster).
_WORDS = {"thing": np.array([0.3, 0.3, 0.906, 0, 0]), "alpha": np.array([0.28, 0.18, 0, 0.943, 0]),
          "beta": np.array([0.18, 0.28, 0, 0, 0.943])}


def test_contrast_prefers_names_that_separate_clusters(tmp_path):
    import pyarrow.parquet as pq

    run = _synthetic_run(tmp_path)
    enc = _FakeTextEncoder(_WORDS)
    plain = name_clusters(run, vocab=list(_WORDS), templates=["{}"], encoder=enc, contrast=0.0, write=False)
    assert {r[0][0] for r in plain.values()} == {"thing"}  # zero-shot: the hub everywhere
    names = name_clusters(run, vocab=list(_WORDS), templates=["{}"], encoder=enc, top=3)
    firsts = {c: names[c][0][0] for c in names}
    assert sorted(firsts.values()) == ["alpha", "beta"]
    table = pq.read_table(run / "clusters.parquet").to_pydict()
    for c, ranked in names.items():
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True) and 0.9 < sum(scores) <= 1 + 1e-9
        assert {n for n, k in zip(table["cluster_name"], table["cluster"]) if k == c} == {firsts[c]}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["cluster_names"] == {str(c): n for c, n in firsts.items()}
    assert metrics["naming"]["method"] == "text" and metrics["naming"]["templates"] == ["{}"]
    assert metrics["naming"]["contrast"] == 0.5 and metrics["naming"]["temperature"] == 100.0
    top = metrics["cluster_name_scores"]["0"]
    assert len(top) == 3 and set(top[0]) == {"name", "score"}
    assert "cluster_name" in (run / "clusters.csv").read_text().splitlines()[0]
    with pytest.raises(ImgclustError, match="--contrast"):
        name_clusters(run, vocab=list(_WORDS), encoder=enc, contrast=2)


def test_contrastive_scores_formula():
    rng = np.random.default_rng(1)
    members = [rng.normal(size=(4, 3)), rng.normal(size=(2, 3)), rng.normal(size=(5, 3))]
    clusters = rng.normal(size=(3, 3))
    got = contrastive_scores(members, clusters, contrast=0.5, chunk=3)

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    for j, L in enumerate(members):
        base = np.mean([clusters[i] for i in range(3) if i != j], axis=0)
        np.testing.assert_allclose(got[j], softmax(L - 0.5 * base).mean(0))
    np.testing.assert_allclose(got.sum(1), 1.0)
    # One cluster: nothing to contrast with, a plain vote.
    np.testing.assert_allclose(contrastive_scores(members[:1], clusters[:1]), softmax(members[0]).mean(0)[None])


# -- the fine-tuned tiny CLIP on coloured shapes --------------------------------------------


@pytest.mark.timeout(300)
def test_finetuned_clip_names_shape_clusters_by_their_majority_class(shapes, tmp_path):
    from language_fixtures import CLASSES

    run = _copy_run(shapes["run"], tmp_path / "run")
    majority = _majority(shapes["result"])
    vocab = tmp_path / "shapes.txt"
    vocab.write_text("\n".join(CLASSES) + "\n")
    # Prompts in the style of the fine-tuning captions ("a red circle").
    names = name_clusters(run, vocab=vocab, templates=["a {}"], device="cpu")
    hits = [names[c][0][0] == majority[c] for c in names]
    assert len(names) == 8 and sum(hits) / len(hits) >= 0.9, (names, majority)
    # The default prompt ensemble ("a photo of a {}.", "a close-up photo of a {}.", ...) mostly
    # agrees even though the model only ever saw "a <colour> <shape>" captions.
    default = name_clusters(run, vocab=vocab, device="cpu", write=False)
    assert sum(default[c][0][0] == majority[c] for c in default) >= 6, (default, majority)

    import pyarrow.parquet as pq

    table = pq.read_table(run / "clusters.parquet").to_pydict()
    for c, ranked in names.items():
        assert {n for n, k in zip(table["cluster_name"], table["cluster"]) if k == c} == {ranked[0][0]}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["cluster_names"] == {str(c): r[0][0] for c, r in names.items()}
    assert metrics["naming"]["vocab_size"] == 8 and metrics["naming"]["templates"] == ["a {}"]
    # The report was rebuilt and carries the names.
    html = (run / "report.html").read_text()
    assert all(r[0][0] in html for r in names.values())


def test_prompt_ensemble_is_the_normalised_mean(shapes):
    from imgclust.encoders import create_encoder

    enc = create_encoder(f"hf:{shapes['model']}", device="cpu")
    emb = prompt_embeddings(enc, ["red circle", "blue square"], DEFAULT_TEMPLATES[:3])
    single = enc.encode_text([t.format("red circle") for t in DEFAULT_TEMPLATES[:3]]).mean(0)
    np.testing.assert_allclose(emb[0], single / np.linalg.norm(single), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_cli_name(shapes, tmp_path):
    from typer.testing import CliRunner

    from imgclust.cli import app
    from language_fixtures import CLASSES

    run = _copy_run(shapes["run"], tmp_path / "run")
    vocab = tmp_path / "shapes.txt"
    vocab.write_text("\n".join(CLASSES) + "\n")
    res = CliRunner().invoke(app, ["name", str(run), "--vocab", str(vocab), "--top", "2", "--template", "a {}",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(n in res.output for n in metrics["cluster_names"].values())
    assert all(len(v) == 2 for v in metrics["cluster_name_scores"].values())


# -- encoders without a text tower ------------------------------------------------------------


def _photo_folder(root: Path) -> Path:
    """scikit-image's bundled cat (Chelsea) and coffee photos, each with four crops."""
    from PIL import Image
    from skimage import data

    for name, arr in (("cat", data.chelsea()), ("coffee", data.coffee())):
        d = root / name
        d.mkdir(parents=True)
        img = Image.fromarray(arr).convert("RGB")
        img.save(d / "full.jpg")
        w, h = img.size
        for i, (a, b, c, e) in enumerate([(0, 0, .8, .8), (.2, .2, 1, 1), (.1, 0, .9, .9), (0, .1, .85, 1)]):
            img.crop((int(a * w), int(b * h), int(c * w), int(e * h))).save(d / f"crop{i}.jpg")
    return root


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    from imgclust import cluster_images

    root = tmp_path_factory.mktemp("photos")
    result = cluster_images(str(_photo_folder(root / "images")), encoder="efficientnet-lite0", k=2, map="pca",
                            labels="folder", device="cpu", cache_dir=root / "cache", out=root / "run",
                            plots=False, report=False)
    return root / "run", _majority(result)


def test_efficientnet_head_names_the_cat_photo_a_cat(photo_run, tmp_path):
    run = _copy_run(photo_run[0], tmp_path / "run")
    majority = photo_run[1]
    names = name_clusters(run, top=5, device="cpu")
    cat = next(c for c, m in majority.items() if m == "cat")
    coffee = next(c for c, m in majority.items() if m == "coffee")
    assert names[cat][0][0] in CAT_CLASSES, names
    assert names[coffee][0][0] in {"espresso", "cup", "coffee mug"}, names
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["naming"]["method"] == "classifier" and metrics["naming"]["images_read"] == 10
    # A vocabulary restricts the classes the head may use.
    names = name_clusters(run, vocab=["tabby cat", "tiger cat", "espresso"], device="cpu")
    assert names[cat][0][0] in {"tabby cat", "tiger cat"} and names[coffee][0][0] == "espresso"
    with pytest.raises(ImgclustError, match="none of the vocabulary"):
        name_clusters(run, vocab=["spaceship"], device="cpu")


def test_encoder_without_text_or_head_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from imgclust import cluster_images
    from imgclust.cli import app
    from language_fixtures import make_shapes

    make_shapes(tmp_path / "imgs", per_class=2, seed=0)
    cluster_images(str(tmp_path / "imgs"), encoder="pixels", k=2, map="pca", cache_dir=tmp_path / "cache",
                   out=tmp_path / "run", plots=False, report=False)
    with pytest.raises(ImgclustError, match="neither a text tower nor a classifier head"):
        name_clusters(tmp_path / "run")
    res = CliRunner().invoke(app, ["name", str(tmp_path / "run")])
    assert res.exit_code == 2 and "neither a text tower" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["name", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not an imgclust run directory" in res.output


def test_a_changed_checkpoint_is_flagged(shapes, tmp_path):
    """Re-saving an hf:DIR after the run changes its fingerprint: naming warns but still works."""
    import os
    import shutil

    from language_fixtures import CLASSES

    model = shutil.copytree(shapes["model"], tmp_path / "model")
    run = _copy_run(shapes["run"], tmp_path / "run")
    cfg = json.loads((run / "run.json").read_text())
    cfg["config"].update(encoder=f"hf:{model}", encoder_weights=str(model))
    (run / "run.json").write_text(json.dumps(cfg))
    later = (model / "config.json").stat().st_mtime + 100
    os.utime(model / "config.json", (later, later))
    with pytest.warns(UserWarning, match="differs from the one that embedded"):
        names = name_clusters(run, vocab=CLASSES, templates=["a {}"], device="cpu", write=False)
    assert len(names) == 8
