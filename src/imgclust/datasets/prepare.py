"""``imgclust datasets prepare NAME ROOT``: an already downloaded dataset -> a labelled manifest.

===============  =====================================================  =====================
name             ROOT holds (the official archive, extracted)           images
===============  =====================================================  =====================
cifar10          ``cifar-10-batches-py/`` (python pickle batches)       written as PNG
cifar100         ``cifar-100-python/`` (``train``, ``test``, ``meta``)  written as PNG
cifar100-20      the same; labels are the 20 standard superclasses      written as PNG
stl10            ``stl10_binary/`` (``*_X.bin``, ``*_y.bin``)           written as PNG
oxford-pets      ``images/*.jpg`` + ``annotations/list.txt`` etc.       used in place
imagenet         ``train/`` or ``val/`` with ``<wnid>/`` class folders  used in place
in50/100/200     the same, only SCAN's/TEMI's 50/100/200 classes        used in place
===============  =====================================================  =====================

The manifest is a CSV ``path,label,split`` (paths relative to the manifest), read by
``imgclust run MANIFEST --labels manifest``. Nothing is downloaded. Decoded images are written
once (an existing PNG is kept), atomically, so an interrupted prepare resumes.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImgclustError
from ._formats import read_cifar, read_imagenet, read_pets, read_stl10
from ._imagenet_subsets import IMAGENET_SUBSETS

__all__ = ["prepare_dataset", "PreparedDataset", "DATASETS"]

DATASETS = ("cifar10", "cifar100", "cifar100-20", "stl10", "oxford-pets", "imagenet", "in50", "in100", "in200")
_ALIASES = {"cifar-10": "cifar10", "cifar-100": "cifar100", "cifar20": "cifar100-20", "cifar100_20": "cifar100-20",
            "cifar-100-20": "cifar100-20", "stl-10": "stl10", "pets": "oxford-pets", "oxford-iiit-pet": "oxford-pets",
            "in1k": "imagenet", "imagenet-50": "in50", "imagenet-100": "in100", "imagenet-200": "in200"}


@dataclass
class PreparedDataset:
    """Where the manifest is, and what it holds."""

    manifest: Path
    n_images: int
    classes: list[str]
    images_dir: Path | None

    @property
    def n_classes(self) -> int:
        """Number of distinct labels."""
        return len(self.classes)


def _read_classes(path) -> list[str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ImgclustError(f"--classes file not found: {p}")
    out = [ln.split()[0] for ln in p.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not out:
        raise ImgclustError(f"--classes file {p} lists no class")
    return out


def _limit(items: list[tuple], limit: int | None) -> list[tuple]:
    """At most ``limit`` items per label (the first ones, in order)."""
    if not limit:
        return items
    seen: dict = {}
    out = []
    for it in items:
        seen[it[1]] = seen.get(it[1], 0) + 1
        if seen[it[1]] <= limit:
            out.append(it)
    return out


def _write_pngs(arrays: np.ndarray, labels, splits, folder: Path, keep: list[int], progress: bool) -> list[str]:
    """``folder/<split>/<label>/<index in its split>.png`` for the ``keep`` rows; existing files are kept.

    The name depends only on the image's place in its split, so one image always gets the same
    file, whatever ``--split`` or ``--limit`` selected it.
    """
    from PIL import Image

    from .._io import atomic_write_bytes
    from ..progress import progress_bar

    first = {sp: splits.index(sp) for sp in dict.fromkeys(splits)}
    paths = []
    with progress_bar(len(keep), "writing PNGs", progress) as adv:
        for i in keep:
            label = labels[i] if labels[i] is not None else "unlabeled"
            p = folder / splits[i] / _safe(label) / f"{i - first[splits[i]]:06d}.png"
            if not (p.is_file() and p.stat().st_size > 0):
                buf = io.BytesIO()
                Image.fromarray(arrays[i]).save(buf, format="PNG")
                atomic_write_bytes(p, buf.getvalue())
            paths.append(str(p))
            adv()
    return paths


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(label)) or "_"


def _collect(name: str, root, split: str, images_dir: Path, classes, limit, progress: bool):
    """``(paths, labels, splits)`` of the dataset, writing PNGs for the array formats."""
    from ..pipeline.sources import IMAGE_EXTENSIONS

    if name in ("cifar10", "cifar100", "cifar100-20", "stl10"):
        if name == "stl10":
            arrays, labels, splits = read_stl10(root, split)
        else:
            arrays, labels, splits = read_cifar(root, "cifar10" if name == "cifar10" else "cifar100", split,
                                                coarse=name == "cifar100-20")
        keep = [i for i, _ in _limit([(i, labels[i]) for i in range(len(labels))], limit)]
        paths = _write_pngs(arrays, labels, splits, images_dir, keep, progress)
        return paths, [labels[i] for i in keep], [splits[i] for i in keep]
    if name == "oxford-pets":
        paths, labels, splits = read_pets(root, split)
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ImgclustError(f"{len(missing)} image(s) listed in the annotations are missing, e.g. {missing[0]}")
    else:
        wanted = _read_classes(classes) if classes else (list(IMAGENET_SUBSETS[name]) if name != "imagenet" else None)
        paths, labels, splits = read_imagenet(root, split, wanted, IMAGE_EXTENSIONS)
    rows = _limit(list(zip(paths, labels, splits)), limit)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _write_manifest(path: Path, paths, labels, splits) -> None:
    import csv

    from .._io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "split"])
    base = path.parent.resolve()
    for p, lab, sp in zip(paths, labels, splits):
        ap = Path(p).resolve()
        try:
            rel = os.path.relpath(ap, base)
        except ValueError:  # another drive (Windows)
            rel = str(ap)
        w.writerow([rel, "" if lab is None else lab, sp])
    atomic_write_text(path, buf.getvalue())


def prepare_dataset(name: str, root: str | os.PathLike, out: str | os.PathLike | None = None, *,
                    split: str = "test", images_dir: str | os.PathLike | None = None,
                    classes: str | os.PathLike | None = None, limit: int | None = None,
                    progress: bool = False) -> PreparedDataset:
    """Convert a downloaded dataset into a labelled manifest (CLI: ``imgclust datasets prepare``).

    Args:
        name: One of :data:`DATASETS` (``cifar10``, ``cifar100``, ``cifar100-20``, ``stl10``,
            ``oxford-pets``, ``imagenet``, ``in50``, ``in100``, ``in200``).
        root: The extracted archive (or the folder holding it).
        out: Manifest CSV to write (default ``ROOT/imgclust-<name>-<split>.csv``).
        split: ``test`` (default; ImageNet's ``val``), ``train`` or ``all``; STL-10 also
            ``unlabeled``, Pets ``trainval``.
        images_dir: Where the PNGs of the array formats go (default: ``<manifest>-images/``).
        classes: ImageNet only: a file with one WordNet id a line (replaces the IN-50/100/200 list).
        limit: At most this many images per class (the first ones).
        progress: Show a progress bar.

    Returns:
        A :class:`PreparedDataset`.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ImgclustError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if classes and key not in ("imagenet", "in50", "in100", "in200"):
        raise ImgclustError("--classes applies to ImageNet folders only")
    root = Path(root).expanduser()
    if not root.exists():
        raise ImgclustError(f"dataset folder not found: {root}")
    manifest = Path(out) if out else root / f"imgclust-{key}-{split}.csv"
    img_dir = Path(images_dir) if images_dir else manifest.with_name(manifest.stem + "-images")
    paths, labels, splits = _collect(key, root, split, img_dir, classes, limit, progress)
    if not paths:
        raise ImgclustError(f"no images found for {key} ({split}) in {root}")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    _write_manifest(manifest, paths, labels, splits)
    wrote = key in ("cifar10", "cifar100", "cifar100-20", "stl10")
    return PreparedDataset(manifest=manifest, n_images=len(paths),
                           classes=sorted({str(v) for v in labels if v is not None}),
                           images_dir=img_dir if wrote else None)
