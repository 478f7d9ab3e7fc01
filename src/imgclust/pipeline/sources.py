"""Find images (files, folders, globs, manifests) and decode them safely to RGB."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image, ImageOps

from ..errors import ImgclustError

__all__ = ["ImageRecord", "IMAGE_EXTENSIONS", "discover", "read_manifest", "load_image", "file_hash",
           "DecodeError", "MAX_PIXELS"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MANIFEST_EXTENSIONS = frozenset({".csv", ".parquet", ".pq"})
# Above this many pixels a file is treated as a decompression bomb and skipped.
MAX_PIXELS = 178_956_970


@dataclass(frozen=True)
class ImageRecord:
    """One input image: its path and, when known, its label and caption."""

    path: str
    label: str | None = None
    caption: str | None = None


class DecodeError(Exception):
    """A file that cannot be used as an image; ``reason`` is short and user-facing."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _walk(root: str) -> Iterable[str]:
    """All files under ``root``, following symlinks but never entering a directory twice."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # symlink loop or a directory reached twice
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=True):
                    subdirs.append(e.path)
                elif e.is_file(follow_symlinks=True):
                    yield e.path
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def _pattern_regex(pattern: str) -> re.Pattern:
    """A glob pattern as a regex over ``/``-separated paths.

    ``*``, ``?``, ``[...]`` stay within one component; a ``**`` component matches zero or more
    folders (everything when it ends the pattern).
    """
    parts = pattern.split("/")
    out = ""
    for n, comp in enumerate(parts):
        last = n == len(parts) - 1
        if comp == "**":
            out += ".*" if last else "(?:[^/]+/)*"
            continue
        i = 0
        while i < len(comp):
            ch = comp[i]
            if ch == "*":
                out += "[^/]*"
            elif ch == "?":
                out += "[^/]"
            elif ch == "[":
                j = i + 1
                if j < len(comp) and comp[j] in "!^":
                    j += 1
                if j < len(comp) and comp[j] == "]":
                    j += 1
                j = comp.find("]", j)
                if j < 0:
                    out += re.escape(ch)
                else:
                    body = comp[i + 1:j].replace("\\", "\\\\")
                    out += "[" + ("^" + body[1:] if body[:1] in "!^" else body) + "]"
                    i = j
            else:
                out += re.escape(ch)
            i += 1
        if not last:
            out += "/"
    return re.compile(out, re.DOTALL)


def _glob_recursive(pattern: str) -> list[str]:
    """Files matching a ``**`` pattern (or under a folder it matches), found with the loop-safe walk."""
    parts = pattern.split("/")
    n_fixed = next(i for i, c in enumerate(parts) if glob.has_magic(c))
    base = "/".join(parts[:n_fixed]) or ("/" if pattern.startswith("/") else ".")
    rx = _pattern_regex(pattern)
    strip = "./" if not parts[:n_fixed] and not pattern.startswith("/") else ""
    base_len = 0 if strip else len(base.rstrip("/"))
    out = []
    for p in _walk(base):
        if strip and p.startswith(strip):
            p = p[len(strip):]
        if rx.fullmatch(p):
            out.append(p)
            continue
        d = os.path.dirname(p)
        while len(d) > base_len:  # a matched folder brings everything under it, as for a plain folder
            if rx.fullmatch(d):
                out.append(p)
                break
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    return out


def _is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def read_manifest(path: str) -> list[ImageRecord]:
    """Read a CSV or Parquet manifest with a ``path`` column and optional ``label``/``caption``.

    Relative paths resolve from the manifest's folder. The ROCOv2 layout (``ID`` and
    ``Caption`` columns, images named ``<ID>.<ext>`` beside the CSV or in an ``images/`` folder)
    is accepted too.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in {".parquet", ".pq"}:
            table = pq.read_table(path)
        else:
            # Every column as text: inferred integers would turn ID "000123" into "123" (and label "007"
            # into "7"), whatever the column's capitalisation.
            import csv

            with open(path, newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), [])
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                strings_can_be_null=False, column_types={name: "string" for name in header}))
    except Exception as exc:
        raise ImgclustError(f"cannot read manifest {path}: {str(exc).splitlines()[0]}") from exc
    cols = {c.lower(): c for c in table.column_names}
    base = os.path.dirname(os.path.abspath(path))
    if "path" in cols:
        paths = [str(p) for p in table.column(cols["path"]).to_pylist()]
    elif "id" in cols:
        paths = [_find_by_id(base, str(i)) for i in table.column(cols["id"]).to_pylist()]
    else:
        raise ImgclustError(f"manifest {path} needs a 'path' column (or ROCOv2's 'ID'); found {table.column_names}")
    labels = table.column(cols["label"]).to_pylist() if "label" in cols else [None] * len(paths)
    captions = table.column(cols["caption"]).to_pylist() if "caption" in cols else [None] * len(paths)
    out = []
    for p, lab, cap in zip(paths, labels, captions):
        p = os.path.expanduser(p)
        if not os.path.isabs(p):
            p = os.path.join(base, p)
        out.append(ImageRecord(os.path.normpath(p), None if lab in (None, "") else str(lab),
                               None if cap in (None, "") else str(cap)))
    return out


def _find_by_id(base: str, image_id: str) -> str:
    for folder in (base, os.path.join(base, "images")):
        for ext in (".jpg", ".png", ".jpeg", ".webp", ""):
            cand = os.path.join(folder, image_id + ext)
            if os.path.isfile(cand):
                return cand
    return os.path.join(base, image_id + ".jpg")


def discover(inputs: str | os.PathLike | Sequence[str | os.PathLike], labels: str | None = None) -> list[ImageRecord]:
    """Expand files, folders (recursive), globs and manifests into image records.

    Args:
        inputs: One or more paths, folders, glob patterns or manifest files.
        labels: ``"folder"`` takes each image's class from its parent folder; ``"manifest"``
            (or ``None``) keeps the labels a manifest provides.

    Returns:
        Records in a stable order, duplicates (same resolved path) removed.

    Raises:
        ImgclustError: a path does not exist, or nothing that looks like an image was found.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if labels not in (None, "folder", "manifest", "none"):
        raise ImgclustError(f"unknown --labels {labels!r}: use folder or manifest")
    records: list[ImageRecord] = []
    for raw in inputs:
        item = os.path.expanduser(str(raw))
        if os.path.isdir(item):
            records.extend(ImageRecord(p) for p in _walk(item) if _is_image_name(p))
        elif os.path.isfile(item):
            if os.path.splitext(item)[1].lower() in MANIFEST_EXTENSIONS:
                records.extend(read_manifest(item))
            else:
                records.append(ImageRecord(item))  # an explicit file is tried even if oddly named
        elif glob.has_magic(item):
            if "**" in item:  # glob's own "**" follows symlink loops forever: walk loop-safely instead
                records.extend(ImageRecord(p) for p in _glob_recursive(item) if _is_image_name(p))
                continue
            matches = sorted(glob.glob(item))
            for m in matches:
                if os.path.isdir(m):
                    records.extend(ImageRecord(p) for p in _walk(m) if _is_image_name(p))
                elif _is_image_name(m):
                    records.append(ImageRecord(m))
        else:
            raise ImgclustError(f"input not found: {item}")
    seen: set[str] = set()
    unique = []
    for r in records:
        key = os.path.realpath(r.path)  # the same file reached through a symlinked folder is one image
        if key in seen:
            continue
        seen.add(key)
        if labels == "folder":
            r = ImageRecord(r.path, Path(r.path).parent.name, r.caption)
        elif labels == "none":
            r = ImageRecord(r.path, None, r.caption)
        unique.append(r)
    if not unique:
        shown = ", ".join(str(i) for i in inputs)
        raise ImgclustError(f"no images found in {shown} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return unique


def file_hash(path: str, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes: the embedding store's key (renames keep their vectors)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_rgb(img: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Any PIL mode to RGB: alpha composited on white, palettes expanded, 16-bit scaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(1.0, float(arr.max()))
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    elif img.mode == "F":
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        img = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255).astype("uint8"), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, background + (255,))
        canvas.alpha_composite(img)
        return canvas.convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


_OPEN_LOCK = threading.Lock()


def load_image(path: str, max_pixels: int = MAX_PIXELS, min_size: int | None = None) -> Image.Image:
    """Decode ``path`` to an RGB image with EXIF orientation applied (first frame of a GIF).

    With ``min_size`` a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose both
    sides stay >= ``min_size`` (PIL draft mode): a 12 MP photo decodes ~10x faster for a
    224 px model, and the single resize that follows works on that smaller image.

    Raises:
        DecodeError: empty, truncated, not an image, unreadable or too large (bomb).
    """
    try:
        if os.path.getsize(path) == 0:
            raise DecodeError(path, "empty file")
    except OSError as exc:
        raise DecodeError(path, f"unreadable: {exc.strerror or exc}") from exc
    try:
        # catch_warnings swaps the process-wide filter list; decoding threads doing it at once leave
        # the "error" filter installed for good. Serialise just the (cheap) header parse.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as img:
            w, h = img.size
            if w * h > max_pixels:
                raise DecodeError(path, f"too large ({w}x{h} pixels): possible decompression bomb")
            img.seek(0)
            if min_size and img.format == "JPEG":
                # Before load() and before the EXIF transpose: draft works on the stored (unrotated)
                # pixels; a square request keeps both sides large enough whichever way it is rotated.
                img.draft("RGB", (min_size, min_size))
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return to_rgb(img)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(path, "too large: possible decompression bomb") from exc
    except PermissionError as exc:
        raise DecodeError(path, "unreadable: permission denied") from exc
    except Image.UnidentifiedImageError as exc:
        raise DecodeError(path, "not an image") from exc
    except OSError as exc:
        msg = str(exc).lower()
        reason = "truncated or corrupt image" if ("truncat" in msg or "broken" in msg or "corrupt" in msg
                                                  or "image file is" in msg) else f"cannot decode: {exc}"
        raise DecodeError(path, reason) from exc
    except Exception as exc:  # any other decoder failure must skip the file, never abort the run
        raise DecodeError(path, f"cannot decode: {type(exc).__name__}: {exc}") from exc

