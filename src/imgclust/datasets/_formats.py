"""Readers of the benchmark datasets' distribution formats: what each stores, as arrays or file lists.

Nothing here downloads. Each reader takes the folder a user extracted the official archive to
(or its parent) and returns ``(images, labels)`` as uint8 arrays (CIFAR, STL-10) or
``(paths, labels)`` (Oxford-IIIT Pets, ImageNet folders).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import ImgclustError

__all__ = ["CIFAR100_SUPERCLASSES", "read_cifar", "read_stl10", "read_pets", "read_imagenet", "find_dir"]

# The standard 20 CIFAR-100 superclasses (Krizhevsky 2009, "coarse" labels), in the order of
# ``meta["coarse_label_names"]``, each with its five fine classes.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
FINE_TO_SUPER = {fine: sup for sup, fines in CIFAR100_SUPERCLASSES.items() for fine in fines}

# The only globals a CIFAR pickle needs (numpy arrays inside plain dicts): anything else in a
# file is refused instead of executed.
_PICKLE_OK = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
              ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLE_OK:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ImgclustError(f"{path} is not a CIFAR python batch: {exc}") from None
    if not isinstance(data, dict):
        raise ImgclustError(f"{path} is not a CIFAR python batch (no dict inside)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in data.items()}


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def find_dir(root: str | os.PathLike, marker: str, subdirs: tuple[str, ...]) -> Path:
    """``root`` or the first of its ``subdirs`` that contains ``marker`` (the extracted archive's folder)."""
    root = Path(root).expanduser()
    for cand in (root, *(root / s for s in subdirs)):
        if (cand / marker).exists():
            return cand
    if not root.exists():
        raise ImgclustError(f"dataset folder not found: {root}")
    raise ImgclustError(f"{root} does not look like the extracted dataset: no {marker} in it "
                        f"or in {', '.join(subdirs)}")


_CIFAR_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                "meta": "batches.meta", "dir": "cifar-10-batches-py"},
    "cifar100": {"train": ["train"], "test": ["test"], "meta": "meta", "dir": "cifar-100-python"},
}


def read_cifar(root, variant: str, split: str, coarse: bool = False) -> tuple[np.ndarray, list[str], list[str]]:
    """CIFAR python batches -> ``(images (N, 32, 32, 3) uint8, label names, split of each image)``.

    Args:
        root: ``cifar-10-batches-py`` / ``cifar-100-python`` or the folder holding it.
        variant: ``cifar10`` or ``cifar100``.
        split: ``train``, ``test`` or ``all``.
        coarse: CIFAR-100 only: the 20 superclasses instead of the 100 classes.
    """
    spec = _CIFAR_FILES[variant]
    folder = find_dir(root, spec["meta"], (spec["dir"],))
    meta = _unpickle(folder / spec["meta"])
    splits = ["train", "test"] if split == "all" else [split]
    images, labels, where = [], [], []
    for sp in splits:
        for fname in spec[sp]:
            if not (folder / fname).is_file():
                raise ImgclustError(f"{folder} has no {fname} ({variant} {sp} split)")
            batch = _unpickle(folder / fname)
            data = np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            labels.extend(_cifar_labels(batch, meta, variant, coarse))
            images.append(data)
            where.extend([sp] * len(data))
    return np.concatenate(images), labels, where


def _cifar_labels(batch: dict, meta: dict, variant: str, coarse: bool) -> list[str]:
    if variant == "cifar10":
        names = _names(meta["label_names"])
        return [names[i] for i in batch["labels"]]
    fine_names = _names(meta["fine_label_names"])
    fine = [fine_names[i] for i in batch["fine_labels"]]
    if not coarse:
        return fine
    if "coarse_labels" in batch and "coarse_label_names" in meta:
        names = _names(meta["coarse_label_names"])
        return [names[i] for i in batch["coarse_labels"]]
    unknown = sorted(set(fine) - set(FINE_TO_SUPER))
    if unknown:
        raise ImgclustError(f"no superclass for CIFAR-100 class(es) {', '.join(unknown[:5])}")
    return [FINE_TO_SUPER[f] for f in fine]


def read_stl10(root, split: str) -> tuple[np.ndarray, list[str | None], list[str]]:
    """STL-10 binaries -> ``(images (N, 96, 96, 3) uint8, label names (None when unlabelled), splits)``.

    ``split``: ``train``, ``test``, ``unlabeled`` or ``all`` (train + test). Each image is stored
    channel by channel, column-major (the official reader's ``transpose(0, 3, 2, 1)``).
    """
    folder = find_dir(root, "class_names.txt", ("stl10_binary",))
    names = [ln.strip() for ln in (folder / "class_names.txt").read_text().splitlines() if ln.strip()]
    splits = ["train", "test"] if split == "all" else [split]
    images, labels, where = [], [], []
    for sp in splits:
        xf = folder / f"{sp}_X.bin"
        if not xf.is_file():
            raise ImgclustError(f"{folder} has no {xf.name} (STL-10 {sp} split)")
        raw = np.fromfile(xf, np.uint8)
        if raw.size % (3 * 96 * 96):
            raise ImgclustError(f"{xf} is not an STL-10 image file (size {raw.size} is not N x 3 x 96 x 96)")
        x = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
        if sp == "unlabeled":
            labels.extend([None] * len(x))
        else:
            y = np.fromfile(folder / f"{sp}_y.bin", np.uint8)
            if len(y) != len(x) or y.min(initial=1) < 1 or y.max(initial=1) > len(names):
                raise ImgclustError(f"{sp}_y.bin does not match {xf.name} ({len(y)} labels, {len(x)} images)")
            labels.extend(names[int(v) - 1] for v in y)
        images.append(np.ascontiguousarray(x))
        where.extend([sp] * len(x))
    return np.concatenate(images), labels, where


def read_pets(root, split: str) -> tuple[list[str], list[str], list[str]]:
    """Oxford-IIIT Pets -> ``(image paths, breed names, splits)`` from ``annotations/*.txt``.

    ``split``: ``trainval``/``train``, ``test`` or ``all`` (``list.txt``). Each line is
    ``<image> <class id> <species> <breed id>``; the breed is the image name without its number
    (``Abyssinian_100`` -> ``Abyssinian``; cats are capitalised, dogs lower case, as published).
    """
    folder = find_dir(root, "annotations", ("oxford-iiit-pet",))
    files = {"all": ["list.txt"], "test": ["test.txt"], "train": ["trainval.txt"], "trainval": ["trainval.txt"]}
    if split not in files:
        raise ImgclustError(f"Oxford-IIIT Pets splits: trainval, test, all (got {split!r})")
    paths, labels, where = [], [], []
    for fname in files[split]:
        ann = folder / "annotations" / fname
        if not ann.is_file():
            raise ImgclustError(f"{folder}/annotations has no {fname}")
        for line in ann.read_text().splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#") or len(parts) < 2:
                continue
            paths.append(str(folder / "images" / f"{parts[0]}.jpg"))
            labels.append(parts[0].rsplit("_", 1)[0])
            where.append(split)
    return paths, labels, where


def read_imagenet(root, split: str, classes: list[str] | None, extensions) -> tuple[list[str], list[str], list[str]]:
    """An ImageNet-style folder (``<split>/<wnid>/*.JPEG``) -> ``(paths, wnids, splits)``, only ``classes``."""
    root = Path(root).expanduser()
    sub = {"test": "val", "val": "val", "train": "train"}.get(split)
    folder = root / sub if sub and (root / sub).is_dir() else root
    if not folder.is_dir():
        raise ImgclustError(f"dataset folder not found: {folder}")
    present = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not present:
        raise ImgclustError(f"{folder} has no class folders (expected <wnid>/ folders, e.g. n01440764/); "
                            "a flat ImageNet val/ must be sorted into class folders first")
    wanted = present if classes is None else list(classes)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ImgclustError(f"{len(missing)} of the {len(wanted)} classes are not folders of {folder} "
                            f"(e.g. {', '.join(missing[:3])})")
    paths, labels = [], []
    for c in wanted:
        files = sorted(f for f in os.listdir(folder / c) if os.path.splitext(f)[1].lower() in extensions)
        paths.extend(str(folder / c / f) for f in files)
        labels.extend([c] * len(files))
    return paths, labels, [sub or "all"] * len(paths)
