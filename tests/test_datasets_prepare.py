"""``imgclust datasets prepare``: every format, written as tiny synthetic files, parsed to the right labels."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgclust.cli import app
from imgclust.datasets._formats import CIFAR100_SUPERCLASSES
from imgclust.datasets._imagenet_subsets import IMAGENET_SUBSETS
from imgclust.datasets.prepare import prepare_dataset
from imgclust.errors import ImgclustError
from imgclust.pipeline.sources import discover

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FINE = sorted(f for fines in CIFAR100_SUPERCLASSES.values() for f in fines)  # the real meta order is alphabetical
COARSE = list(CIFAR100_SUPERCLASSES)


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """Images whose pixels say where they are: orientation and channel order errors show."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    x[:, 0, :, 0] = 255  # top row red
    x[:, :, 0, 2] = 0  # left column without blue
    return x


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(x: np.ndarray, **labels) -> dict:
    return {b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), **{k.encode(): v for k, v in labels.items()}}


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def _png(manifest: Path, row: dict) -> np.ndarray:
    return np.asarray(Image.open(manifest.parent / row["path"]))


def test_cifar10_batches_become_pngs_with_their_labels(tmp_path):
    d = tmp_path / "dl" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    _dump(d / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10]})
    train = _images(10, 32, 0)
    for i in range(1, 6):
        _dump(d / f"data_batch_{i}", _cifar_batch(train[2 * i - 2:2 * i], labels=[i, 9 - i]))
    test = _images(3, 32, 1)
    _dump(d / "test_batch", _cifar_batch(test, labels=[3, 0, 8]))

    res = prepare_dataset("cifar10", tmp_path / "dl", out=tmp_path / "m.csv")
    rows = _rows(res.manifest)
    assert [r["label"] for r in rows] == ["cat", "airplane", "ship"] and res.n_images == 3
    for r, x in zip(rows, test):
        assert np.array_equal(_png(res.manifest, r), x)  # pixel exact, right orientation
    res = prepare_dataset("cifar10", tmp_path / "dl", out=tmp_path / "all.csv", split="all")
    rows = _rows(res.manifest)
    assert [r["label"] for r in rows][:4] == ["automobile", "ship", "bird", "horse"]
    assert [r["split"] for r in rows].count("train") == 10 and res.n_images == 13
    recs = discover(str(res.manifest), labels="manifest")  # what `imgclust run MANIFEST --labels manifest` reads
    assert [r.label for r in recs] == [r["label"] for r in rows] and all(Path(r.path).is_file() for r in recs)


@pytest.mark.parametrize("with_coarse", [True, False])
def test_cifar100_and_its_20_superclasses(tmp_path, with_coarse):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    meta = {b"fine_label_names": [f.encode() for f in FINE]}
    if with_coarse:
        meta[b"coarse_label_names"] = [c.encode() for c in COARSE]
    _dump(d / "meta", meta)
    fine = [FINE.index("whale"), FINE.index("tractor"), FINE.index("rose"), FINE.index("woman")]
    batch = {"fine_labels": fine}
    if with_coarse:
        batch["coarse_labels"] = [COARSE.index(c) for c in ("aquatic_mammals", "vehicles_2", "flowers", "people")]
    x = _images(4, 32, 2)
    _dump(d / "test", _cifar_batch(x, **batch))
    _dump(d / "train", _cifar_batch(x[:1], **{k: v[:1] for k, v in batch.items()}))

    fine_rows = _rows(prepare_dataset("cifar100", tmp_path, out=tmp_path / "f.csv").manifest)
    assert [r["label"] for r in fine_rows] == ["whale", "tractor", "rose", "woman"]
    res = prepare_dataset("cifar100-20", tmp_path, out=tmp_path / "c.csv")
    assert [r["label"] for r in _rows(res.manifest)] == ["aquatic_mammals", "vehicles_2", "flowers", "people"]
    assert np.array_equal(_png(res.manifest, _rows(res.manifest)[1]), x[1])


def test_the_superclass_table_is_the_standard_partition():
    fines = [f for fs in CIFAR100_SUPERCLASSES.values() for f in fs]
    assert len(CIFAR100_SUPERCLASSES) == 20 and len(fines) == len(set(fines)) == 100
    assert all(len(fs) == 5 for fs in CIFAR100_SUPERCLASSES.values())


def test_stl10_binaries_are_column_major(tmp_path):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (d / "class_names.txt").write_text("\n".join(names) + "\n")
    x = _images(3, 96, 3)
    x.transpose(0, 3, 2, 1).tofile(d / "test_X.bin")  # the official layout
    np.array([1, 10, 8], np.uint8).tofile(d / "test_y.bin")
    x[:2].transpose(0, 3, 2, 1).tofile(d / "unlabeled_X.bin")
    res = prepare_dataset("stl10", tmp_path, out=tmp_path / "s.csv", limit=5)
    rows = _rows(res.manifest)
    assert [r["label"] for r in rows] == ["airplane", "truck", "monkey"]
    assert all(np.array_equal(_png(res.manifest, r), xi) for r, xi in zip(rows, x))
    un = _rows(prepare_dataset("stl10", tmp_path, out=tmp_path / "u.csv", split="unlabeled").manifest)
    assert [r["label"] for r in un] == ["", ""]
    (d / "test_X.bin").write_bytes(b"\0" * 100)
    with pytest.raises(ImgclustError, match="not an STL-10 image file"):
        prepare_dataset("stl10", tmp_path, out=tmp_path / "s.csv")


def test_oxford_pets_breeds_from_the_annotation_list(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    names = ["Abyssinian_1", "Abyssinian_12", "american_bulldog_100", "great_pyrenees_7"]
    for n in names:
        Image.new("RGB", (20, 16), (10, 20, 30)).save(tmp_path / "images" / f"{n}.jpg")
    (tmp_path / "annotations" / "list.txt").write_text(
        "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
        "Abyssinian_1 1 1 1\nAbyssinian_12 1 1 1\namerican_bulldog_100 2 2 1\ngreat_pyrenees_7 15 2 8\n")
    (tmp_path / "annotations" / "test.txt").write_text("Abyssinian_12 1 1 1\ngreat_pyrenees_7 15 2 8\n")
    rows = _rows(prepare_dataset("oxford-pets", tmp_path, split="all").manifest)
    assert [r["label"] for r in rows] == ["Abyssinian", "Abyssinian", "american_bulldog", "great_pyrenees"]
    res = prepare_dataset("pets", tmp_path, out=tmp_path / "t.csv")
    assert [r["label"] for r in _rows(res.manifest)] == ["Abyssinian", "great_pyrenees"] and res.images_dir is None
    assert [Path(r.path).name for r in discover(str(res.manifest))] == ["Abyssinian_12.jpg", "great_pyrenees_7.jpg"]
    (tmp_path / "images" / "great_pyrenees_7.jpg").unlink()
    with pytest.raises(ImgclustError, match="missing"):
        prepare_dataset("oxford-pets", tmp_path)


def test_imagenet_subsets_and_a_classes_file(tmp_path):
    val = tmp_path / "val"
    in50 = IMAGENET_SUBSETS["in50"]
    extra = "n01440764"  # tench: in no subset
    assert extra not in IMAGENET_SUBSETS["in200"]
    for wnid in [*in50, extra]:
        (val / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(val / wnid / "a.JPEG")
    res = prepare_dataset("in50", tmp_path, out=tmp_path / "in50.csv")
    assert res.n_classes == 50 and set(res.classes) == set(in50) and extra not in res.classes
    with pytest.raises(ImgclustError, match="not folders"):
        prepare_dataset("in100", tmp_path, out=tmp_path / "in100.csv")
    (tmp_path / "mine.txt").write_text(f"# my classes\n{extra} tench\n{in50[0]}\n")
    res = prepare_dataset("imagenet", tmp_path, out=tmp_path / "mine.csv", classes=tmp_path / "mine.txt")
    assert [r["label"] for r in _rows(res.manifest)] == [extra, in50[0]]
    assert prepare_dataset("imagenet", tmp_path, out=tmp_path / "all.csv").n_classes == 51


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _dump(d / "batches.meta", Evil())
    with pytest.raises(ImgclustError, match="refusing"):
        prepare_dataset("cifar10", tmp_path)


def test_cli_prepare_then_errors_are_one_line(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    _dump(d / "batches.meta", {b"label_names": [c.encode() for c in CIFAR10]})
    _dump(d / "test_batch", _cifar_batch(_images(2, 32, 4), labels=[1, 2]))
    runner = CliRunner()
    res = runner.invoke(app, ["datasets", "prepare", "cifar10", str(tmp_path), "--out", str(tmp_path / "m.csv"), "-q"])
    assert res.exit_code == 0, res.output
    assert "2 images, 2 classes" in res.output and (tmp_path / "m.csv").is_file()
    bad = runner.invoke(app, ["datasets", "prepare", "mnist", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown dataset 'mnist'" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["datasets", "prepare", "stl10", str(tmp_path)])
    assert bad.exit_code != 0 and "class_names.txt" in bad.output
