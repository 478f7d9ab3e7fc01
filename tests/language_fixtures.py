"""Generated captioned images (coloured shapes) and a tiny CLIP fine-tuned on them, once per session.

``finetuned_shapes(tmp_path_factory)`` builds a tiny random CLIP (:func:`hf_fixtures.make_tiny_clip`),
fine-tunes it with :func:`imgclust.language.finetune.finetune_clip` on a thousand 32x32 images (150 per class) of
red/blue/green/yellow circles and squares drawn with PIL at random positions and sizes, and
clusters a separately generated held-out folder with the result. The work is memoised, so the
finetune, naming and search test modules share one fine-tune.
"""

from __future__ import annotations

import contextlib
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLASSES", "COLORS", "SHAPES", "TOKENIZER_WORDS", "draw_shape", "finetuned_shapes", "make_shapes",
           "torch_threads"]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 50), "yellow": (235, 210, 20)}
SHAPES = ("circle", "square")
CLASSES = [f"{c} {s}" for c in COLORS for s in SHAPES]
# Words of imgclust.language.naming.DEFAULT_TEMPLATES missing from hf_fixtures.DEFAULT_VOCAB.
TOKENIZER_WORDS = ["close", "-", "up"]

_MEMO: dict[str, dict] = {}


def draw_shape(color: str, shape: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """One filled circle or square, jittered colour, random size (50-90%) and position, light background."""
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    side = int(rng.integers(int(size * 0.5), int(size * 0.9) + 1))
    x = int(rng.integers(0, size - side + 1))
    y = int(rng.integers(0, size - side + 1))
    fill = tuple(int(np.clip(v + rng.integers(-25, 26), 0, 255)) for v in COLORS[color])
    box = [x, y, x + side - 1, y + side - 1]
    (ImageDraw.Draw(img).ellipse if shape == "circle" else ImageDraw.Draw(img).rectangle)(box, fill=fill)
    return img


def make_shapes(root: Path, per_class: int, seed: int, folders: bool = False) -> list[tuple[str, str, str]]:
    """Write ``per_class`` images of each class and ``pairs.csv`` (path, caption, label).

    Captions are "a red circle", "a blue square", ... With ``folders`` each class gets its own
    sub-folder (``red_circle/``), so ``--labels folder`` gives the truth.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in CLASSES:
        color, shape = name.split()
        folder = root / name.replace(" ", "_") if folders else root
        folder.mkdir(exist_ok=True)
        for i in range(per_class):
            path = folder / f"{color}_{shape}_{i:03d}.png"
            draw_shape(color, shape, rng).save(path)
            rows.append((str(path), f"a {name}", name))
    with open(root / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption", "label"])
        writer.writerows(rows)
    return rows


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch threads: a tiny model trains ~10x faster single-threaded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def finetuned_shapes(tmp_path_factory) -> dict:
    """Fine-tune once per session; returns dirs, history, held-out run and timings.

    Keys: ``checkpoint`` (the tiny CLIP before training), ``model`` (fine-tuned dir), ``history``,
    ``train`` (pairs folder), ``heldout`` (class folders), ``run`` (run dir of the held-out
    images clustered with ``hf:model``, k=8), ``result`` (its ClusteringResult), ``seconds``.
    """
    if "shapes" in _MEMO:
        return _MEMO["shapes"]
    from hf_fixtures import make_tiny_clip
    from imgclust import cluster_images
    from imgclust.language.finetune import finetune_clip

    root = tmp_path_factory.mktemp("language")
    t0 = time.perf_counter()
    make_shapes(root / "train", per_class=150, seed=0)
    make_shapes(root / "heldout", per_class=20, seed=1, folders=True)
    (root / "heldout" / "pairs.csv").unlink()  # the folder is clustered as images only
    checkpoint = make_tiny_clip(root / "tiny", image_size=32, vocab=TOKENIZER_WORDS, seed=0)
    with torch_threads(1):
        t1 = time.perf_counter()
        history = finetune_clip(root / "train" / "pairs.csv", encoder=f"hf:{checkpoint}", out=root / "model",
                                epochs=30, batch_size=64, lr=3e-3, val_fraction=0.2, device="cpu",
                                random_state=0, progress=False)
        t_finetune = time.perf_counter() - t1
        result = cluster_images(str(root / "heldout"), encoder=f"hf:{root / 'model'}", k=8, map="pca",
                                labels="folder", device="cpu", cache_dir=root / "cache", out=root / "run",
                                plots=True, report=True)
    _MEMO["shapes"] = {"checkpoint": checkpoint, "model": root / "model", "history": history,
                       "train": root / "train", "heldout": root / "heldout", "run": root / "run",
                       "result": result, "root": root,
                       "seconds": {"total": time.perf_counter() - t0, "finetune": t_finetune}}
    return _MEMO["shapes"]
