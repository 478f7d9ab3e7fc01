"""Finding images (files, folders, globs, manifests) and decoding them safely to RGB."""

from __future__ import annotations

import builtins
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgclust.errors import ImgclustError
from imgclust.pipeline.sources import DecodeError, ImageRecord, discover, file_hash, load_image, read_manifest


def _png(path: Path, color=(10, 20, 30), size=(6, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _pixels(img: Image.Image) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in px) for px in np.asarray(img).reshape(-1, 3)]


# --------------------------------------------------------------------------- discovery
def test_discover_folder_recursive_sorted_and_filters_non_images(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "a.png")
    _png(tmp_path / "sub" / "deeper" / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "data.csv").write_text("x\n1\n")
    recs = discover(tmp_path)
    assert [Path(r.path).relative_to(tmp_path).as_posix() for r in recs] == ["a.png", "b.png", "sub/deeper/c.png"]
    assert all(r.label is None and r.caption is None for r in recs)


def test_discover_all_extensions_case_insensitive(tmp_path):
    names = ["a.jpg", "b.JPEG", "c.png", "d.webp", "e.bmp", "f.tif", "g.TIFF", "h.gif"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")  # discovery goes by name; decoding is later
    assert sorted(Path(r.path).name for r in discover(tmp_path)) == sorted(names)


def test_discover_explicit_file_and_multiple_inputs(tmp_path):
    a = _png(tmp_path / "one" / "a.png")
    b = _png(tmp_path / "two" / "b.png")
    recs = discover([str(a), tmp_path / "two"])
    assert [r.path for r in recs] == [str(a), str(b)]


def test_discover_explicit_oddly_named_file_is_kept(tmp_path):
    f = tmp_path / "scan.dat"
    f.write_bytes(b"x")
    assert discover(f) == [ImageRecord(str(f))]


def test_discover_glob(tmp_path):
    _png(tmp_path / "x1.png")
    _png(tmp_path / "x2.png")
    _png(tmp_path / "y1.png")
    _png(tmp_path / "d" / "x3.png")
    recs = discover(str(tmp_path / "x*.png"))
    assert [Path(r.path).name for r in recs] == ["x1.png", "x2.png"]


def test_discover_recursive_glob(tmp_path):
    _png(tmp_path / "x1.png")
    _png(tmp_path / "d" / "e" / "x2.png")
    _png(tmp_path / "d" / "e" / "y.png")
    _png(tmp_path / "d" / ".hidden" / "x3.png")
    (tmp_path / "d" / "x4.txt").write_text("no")
    recs = discover(str(tmp_path / "**" / "x*.png"))
    assert sorted(Path(r.path).relative_to(tmp_path).as_posix() for r in recs) == ["d/e/x2.png", "x1.png"]


def test_discover_relative_recursive_glob(tmp_path, monkeypatch):
    _png(tmp_path / "a" / "1.png")
    _png(tmp_path / "a" / "b" / "2.png")
    _png(tmp_path / "xa" / "3.png")
    _png(tmp_path / "4.png")
    monkeypatch.chdir(tmp_path)
    assert [r.path for r in discover("**/*.png")] == ["4.png", "a/1.png", "a/b/2.png", "xa/3.png"]
    assert [r.path for r in discover("*/**/*.png")] == ["a/1.png", "a/b/2.png", "xa/3.png"]
    assert [r.path for r in discover("**/a")] == ["a/1.png", "a/b/2.png"]  # a matched folder is walked
    assert [r.path for r in discover("**/b")] == ["a/b/2.png"]


def test_discover_glob_matching_folders_expands_them(tmp_path):
    _png(tmp_path / "cats" / "a.png")
    _png(tmp_path / "cats" / "sub" / "b.png")
    _png(tmp_path / "dogs" / "c.png")
    recs = discover(str(tmp_path / "ca*"))
    assert sorted(Path(r.path).name for r in recs) == ["a.png", "b.png"]


def test_labels_folder_uses_parent_folder(tmp_path):
    _png(tmp_path / "cat" / "1.png")
    _png(tmp_path / "dog" / "2.png")
    _png(tmp_path / "dog" / "puppies" / "3.png")
    recs = discover(tmp_path, labels="folder")
    assert [(Path(r.path).name, r.label) for r in recs] == [("1.png", "cat"), ("2.png", "dog"), ("3.png", "puppies")]


def test_unknown_labels_mode(tmp_path):
    _png(tmp_path / "a.png")
    with pytest.raises(ImgclustError, match="unknown --labels 'bogus'"):
        discover(tmp_path, labels="bogus")


def test_hidden_files_and_folders_ignored(tmp_path):
    _png(tmp_path / "seen.png")
    _png(tmp_path / ".hidden.png")
    _png(tmp_path / ".git" / "inside.png")
    _png(tmp_path / "sub" / "._resource_fork.png")
    assert [Path(r.path).name for r in discover(tmp_path)] == ["seen.png"]


def test_duplicates_removed(tmp_path):
    a = _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    recs = discover([tmp_path, str(a), tmp_path / "." / "a.png", str(tmp_path / "*.png")])
    assert [Path(r.path).name for r in recs] == ["a.png", "b.png"]


def test_duplicates_through_symlinked_folder_removed(tmp_path):
    _png(tmp_path / "real" / "a.png")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    recs = discover([tmp_path / "real", tmp_path / "alias"])
    assert len(recs) == 1
    # Walking the parent reaches the same folder twice (real/ and alias/): listed once.
    assert len(discover(tmp_path)) == 1


@pytest.mark.timeout(20)
def test_symlink_loop_does_not_hang(tmp_path):
    _png(tmp_path / "top.png")
    _png(tmp_path / "sub" / "inner.png")
    os.symlink("..", tmp_path / "sub" / "parent")  # sub/parent -> tmp_path: a loop
    os.symlink(".", tmp_path / "sub" / "self")  # sub/self -> sub: a loop
    os.symlink("nowhere", tmp_path / "dangling.png")  # broken link: not an image, not an error
    expected = ["sub/inner.png", "top.png"]
    recs = discover(tmp_path)
    assert sorted(Path(r.path).relative_to(tmp_path).as_posix() for r in recs) == expected
    # The recursive glob must not loop either (Python's glob follows the links forever).
    recs = discover(str(tmp_path / "**" / "*.png"))
    assert sorted(Path(os.path.realpath(r.path)).relative_to(os.path.realpath(tmp_path)).as_posix()
                  for r in recs) == expected


def test_no_images_raises(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ImgclustError, match="no images found"):
        discover(tmp_path)
    with pytest.raises(ImgclustError, match="no images found"):
        discover(str(tmp_path / "*.png"))


def test_missing_path_raises(tmp_path):
    with pytest.raises(ImgclustError, match="input not found: .*does-not-exist"):
        discover(tmp_path / "does-not-exist")


# --------------------------------------------------------------------------- manifests
@pytest.fixture
def manifest_dir(tmp_path):
    _png(tmp_path / "imgs" / "a.png")
    _png(tmp_path / "imgs" / "b.png")
    _png(tmp_path / "elsewhere" / "c.png")
    return tmp_path


def test_csv_manifest_relative_paths_labels_captions(manifest_dir, monkeypatch):
    d = manifest_dir
    (d / "list.csv").write_text(
        "path,label,caption\n"
        "imgs/a.png,cat,\"a cat, sitting\"\n"
        "imgs/b.png,,\n"
        f"{d / 'elsewhere' / 'c.png'},2,plain\n")
    monkeypatch.chdir("/")  # relative paths resolve from the manifest's folder, not the cwd
    recs = read_manifest(str(d / "list.csv"))
    assert recs == [
        ImageRecord(str(d / "imgs" / "a.png"), "cat", "a cat, sitting"),
        ImageRecord(str(d / "imgs" / "b.png"), None, None),
        ImageRecord(str(d / "elsewhere" / "c.png"), "2", "plain"),
    ]
    assert discover(d / "list.csv") == recs  # discover routes manifests to read_manifest


def test_parquet_manifest(manifest_dir):
    d = manifest_dir
    pd.DataFrame({"path": ["imgs/a.png", "imgs/b.png"], "label": [3, 4], "caption": ["x", None]}).to_parquet(
        d / "list.parquet")
    assert read_manifest(str(d / "list.parquet")) == [
        ImageRecord(str(d / "imgs" / "a.png"), "3", "x"),
        ImageRecord(str(d / "imgs" / "b.png"), "4", None),
    ]


def test_manifest_labels_folder_overrides(manifest_dir):
    d = manifest_dir
    (d / "list.csv").write_text("path,label\nimgs/a.png,cat\nelsewhere/c.png,dog\n")
    assert [r.label for r in discover(d / "list.csv", labels="folder")] == ["imgs", "elsewhere"]
    assert [r.label for r in discover(d / "list.csv", labels="manifest")] == ["cat", "dog"]
    assert [r.label for r in discover(d / "list.csv", labels="none")] == [None, None]


def test_manifest_path_only_and_uppercase_column(manifest_dir):
    d = manifest_dir
    (d / "list.csv").write_text("Path\nimgs/b.png\n")
    assert read_manifest(str(d / "list.csv")) == [ImageRecord(str(d / "imgs" / "b.png"))]


def test_manifest_numeric_looking_text_kept_verbatim(tmp_path):
    _png(tmp_path / "000123.jpg")
    (tmp_path / "roco.csv").write_text("ID,Caption\n000123,0042\n")
    assert read_manifest(str(tmp_path / "roco.csv")) == [ImageRecord(str(tmp_path / "000123.jpg"), None, "0042")]
    (tmp_path / "list.csv").write_text("Path,Label\n000123.jpg,007\n")
    assert read_manifest(str(tmp_path / "list.csv")) == [ImageRecord(str(tmp_path / "000123.jpg"), "007")]


def test_unreadable_manifest(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00 not utf-8")
    with pytest.raises(ImgclustError, match="cannot read manifest"):
        read_manifest(str(tmp_path / "bad.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ImgclustError, match="cannot read manifest"):
        discover(tmp_path / "bad.parquet")


def test_manifest_without_path_column(manifest_dir):
    (manifest_dir / "bad.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(ImgclustError, match="needs a 'path' column"):
        read_manifest(str(manifest_dir / "bad.csv"))


def test_rocov2_layout(tmp_path):
    _png(tmp_path / "images" / "ROCOv2_2023_train_000001.jpg")
    _png(tmp_path / "ROCOv2_2023_train_000002.png")
    (tmp_path / "train_captions.csv").write_text(
        "ID,Caption\n"
        "ROCOv2_2023_train_000001,\"CT scan of the chest, axial view\"\n"
        "ROCOv2_2023_train_000002,X-ray of the left hand\n")
    recs = discover(tmp_path / "train_captions.csv")
    assert recs == [
        ImageRecord(str(tmp_path / "images" / "ROCOv2_2023_train_000001.jpg"), None,
                    "CT scan of the chest, axial view"),
        ImageRecord(str(tmp_path / "ROCOv2_2023_train_000002.png"), None, "X-ray of the left hand"),
    ]


# --------------------------------------------------------------------------- decoding formats
@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"),
                                     ("TIFF", "tif"), ("GIF", "gif")])
def test_decode_formats(tmp_path, fmt, ext):
    p = tmp_path / f"x.{ext}"
    Image.new("RGB", (7, 5), (200, 40, 40)).save(p, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    img = load_image(str(p))
    assert img.mode == "RGB" and img.size == (7, 5)
    r, g, b = img.getpixel((3, 2))
    if fmt in ("JPEG", "GIF"):  # lossy / palette-quantised
        assert abs(r - 200) <= 8 and abs(g - 40) <= 8 and abs(b - 40) <= 8
    else:
        assert (r, g, b) == (200, 40, 40)


def test_animated_gif_first_frame(tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(p) as im:
        assert im.n_frames == 3
    assert load_image(str(p)).getpixel((1, 1)) == (255, 0, 0)


def test_exif_orientation_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(p, exif=exif.tobytes(), quality=95)
    out = load_image(str(p))
    assert out.size == (20, 40)
    # After a 90-degree clockwise turn the white (left) half ends up on top.
    assert np.asarray(out)[:15].mean() > 200 and np.asarray(out)[25:].mean() < 50


# --------------------------------------------------------------------------- modes -> RGB
def test_rgba_composited_on_white(tmp_path):
    im = Image.new("RGBA", (3, 1))
    im.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red -> white
    im.putpixel((1, 0), (255, 0, 0, 255))  # opaque red stays red
    im.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black -> mid grey
    im.save(tmp_path / "a.png")
    px = _pixels(load_image(str(tmp_path / "a.png")))
    assert px[0] == (255, 255, 255)
    assert px[1] == (255, 0, 0)
    assert all(abs(v - 127) <= 1 for v in px[2])


def test_la_composited_on_white(tmp_path):
    im = Image.new("LA", (2, 1))
    im.putpixel((0, 0), (0, 0))
    im.putpixel((1, 0), (0, 255))
    im.save(tmp_path / "la.png")
    assert _pixels(load_image(str(tmp_path / "la.png"))) == [(255, 255, 255), (0, 0, 0)]


def test_grayscale_l(tmp_path):
    Image.fromarray(np.array([[0, 77, 255]], np.uint8), "L").save(tmp_path / "l.png")
    assert _pixels(load_image(str(tmp_path / "l.png"))) == [(0, 0, 0), (77, 77, 77), (255, 255, 255)]


@pytest.mark.parametrize("ext", ["png", "gif"])
def test_palette_with_transparency(tmp_path, ext):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    im.putpixel((0, 0), 0)  # index 0 = red, declared transparent
    im.putpixel((1, 0), 1)  # index 1 = green
    im.save(tmp_path / f"p.{ext}", transparency=0)
    with Image.open(tmp_path / f"p.{ext}") as raw:
        assert raw.mode == "P"
    assert _pixels(load_image(str(tmp_path / f"p.{ext}"))) == [(255, 255, 255), (0, 255, 0)]


def test_palette_without_transparency(tmp_path):
    im = Image.new("P", (1, 1))
    im.putpalette([12, 34, 56] + [0] * 765)
    im.save(tmp_path / "p.png")
    assert _pixels(load_image(str(tmp_path / "p.png"))) == [(12, 34, 56)]


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_cmyk(tmp_path, ext):
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / f"c.{ext}")  # pure red in CMYK
    with Image.open(tmp_path / f"c.{ext}") as raw:
        assert raw.mode == "CMYK"
    r, g, b = load_image(str(tmp_path / f"c.{ext}")).getpixel((0, 0))
    assert r >= 250 and g <= 5 and b <= 5


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_grayscale(tmp_path, ext):
    Image.fromarray(np.array([[65535, 32768, 0, 257]], np.uint16)).save(tmp_path / f"g.{ext}")
    with Image.open(tmp_path / f"g.{ext}") as raw:
        assert raw.mode.startswith("I")
    px = _pixels(load_image(str(tmp_path / f"g.{ext}")))
    assert px == [(255, 255, 255), (128, 128, 128), (0, 0, 0), (1, 1, 1)]


def test_one_bit(tmp_path):
    im = Image.new("1", (2, 1), 0)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as raw:
        assert raw.mode == "1"
    assert _pixels(load_image(str(tmp_path / "b.png"))) == [(0, 0, 0), (255, 255, 255)]


def test_float_tiff(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    px = _pixels(load_image(str(tmp_path / "f.tif")))
    assert px[0] == (0, 0, 0) and px[2] == (255, 255, 255) and abs(px[1][0] - 127) <= 1


# --------------------------------------------------------------------------- bad files
def _decode_reason(path) -> str:
    with pytest.raises(DecodeError) as ei:
        load_image(str(path))
    assert ei.value.path == str(path)
    return ei.value.reason


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    assert _decode_reason(tmp_path / "z.jpg") == "empty file"


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "t.jpg").write_text("definitely not a JPEG\n")
    assert _decode_reason(tmp_path / "t.jpg") == "not an image"


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
def test_truncated(tmp_path, fmt, ext):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    (tmp_path / f"t.{ext}").write_bytes(data[: len(data) // 2])
    assert _decode_reason(tmp_path / f"t.{ext}") == "truncated or corrupt image"


def test_missing_file(tmp_path):
    assert _decode_reason(tmp_path / "gone.png").startswith("unreadable:")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file; see the simulated variant")
def test_unreadable_file_chmod(tmp_path):
    p = _png(tmp_path / "secret.png")
    p.chmod(0)
    try:
        assert _decode_reason(p).startswith("unreadable")
    finally:
        p.chmod(0o644)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    p = _png(tmp_path / "secret.png")
    real_open = builtins.open

    def guarded(file, *a, **kw):
        if os.fspath(file) == str(p):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(builtins, "open", guarded)
    assert _decode_reason(p) == "unreadable: permission denied"
    with pytest.raises(PermissionError):
        file_hash(str(p))


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w,h", [(100_000, 100_000), (12_000, 10_000)])
def test_decompression_bomb_header(tmp_path, w, h):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(w, h))  # a few bytes claiming billions of pixels
    assert os.path.getsize(p) < 200
    assert "decompression bomb" in _decode_reason(p)


def test_max_pixels_argument(tmp_path):
    p = _png(tmp_path / "big.png", size=(30, 20))
    with pytest.raises(DecodeError, match=r"too large \(30x20 pixels\): possible decompression bomb"):
        load_image(str(p), max_pixels=599)
    assert load_image(str(p), max_pixels=600).size == (30, 20)


def test_decoding_in_threads_leaves_warning_filters_alone(tmp_path):
    """load_image runs in a thread pool; it must not leak warning filters into the process."""
    from conftest import write_random_images
    from imgclust.encoders import create_encoder
    from imgclust.pipeline.embed import embed_records

    paths = write_random_images(tmp_path / "imgs", 300)
    before = list(warnings.filters)
    res = embed_records([ImageRecord(str(p)) for p in paths], create_encoder("pixels"), batch_size=50,
                        workers=4, progress=False)
    assert res.n_encoded == 300
    assert list(warnings.filters) == before


def test_file_hash_is_content_based(tmp_path):
    a = _png(tmp_path / "a.png", color=(1, 2, 3))
    b = tmp_path / "copy.png"
    b.write_bytes(a.read_bytes())
    c = _png(tmp_path / "c.png", color=(1, 2, 4))
    assert file_hash(str(a)) == file_hash(str(b)) != file_hash(str(c))
    assert len(file_hash(str(a))) == 32
