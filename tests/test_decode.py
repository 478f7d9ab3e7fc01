"""Decoding at the size the encoder needs: JPEG draft mode keeps EXIF orientation and colour."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgclust.pipeline.sources import load_image

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _rotated_jpeg(path, w=3200, h=1600, orientation=6):
    """Stored pixels: left half red, right half blue; EXIF says 'rotate 90 degrees clockwise to view'."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = RED
    arr[:, w // 2:] = BLUE
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, quality=90, exif=exif)
    return path


def test_draft_decode_is_smaller_and_keeps_orientation_and_colour(tmp_path):
    path = _rotated_jpeg(tmp_path / "rot.jpg")
    full = load_image(str(path))
    small = load_image(str(path), min_size=224)
    assert full.size == (1600, 3200)  # upright: EXIF rotation applied
    # DCT-domain 1/4 scale (3200 // 224 = 14, 1600 // 224 = 7 -> the largest of 8/4/2/1 not above 7).
    assert small.size == (400, 800)
    assert min(small.size) >= 224 and small.mode == "RGB"
    a = np.asarray(small, np.int16)
    # Orientation 6 puts the stored left (red) half on top when viewed.
    assert np.abs(a[: 380].reshape(-1, 3).mean(0) - RED).max() < 6
    assert np.abs(a[420:].reshape(-1, 3).mean(0) - BLUE).max() < 6
    # Same picture as full decode + resize, to JPEG/resampling noise.
    ref = np.asarray(full.resize(small.size, Image.BICUBIC), np.int16)
    assert np.abs(ref - a).mean() < 2.0


@pytest.mark.parametrize("size", [32, 224, 1000])
def test_draft_never_goes_below_the_requested_size(tmp_path, size):
    path = _rotated_jpeg(tmp_path / "r.jpg", w=1200, h=900, orientation=1)
    img = load_image(str(path), min_size=size)
    assert min(img.size) >= min(size, 900)
    assert img.size[0] / img.size[1] == pytest.approx(1200 / 900, rel=0.01)


def test_non_jpeg_is_decoded_at_full_size(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (1200, 900), RED).save(path)
    assert load_image(str(path), min_size=224).size == (1200, 900)


def test_decode_worker_hands_the_encoder_its_input_size(tmp_path):
    from imgclust.encoders import create_encoder
    from imgclust.pipeline.embed import _decoder
    from imgclust.pipeline.sources import ImageRecord

    path = _rotated_jpeg(tmp_path / "rot.jpg")
    enc = create_encoder("pixels")  # needs 32 px: 1/8 DCT scale, no per-image prepare step
    img, err = _decoder(enc)(ImageRecord(str(path)))
    assert err is None and img.size == (200, 400)

    class Square(type(enc)):
        def prepare(self, im):
            return im.resize((48, 48))

    img, err = _decoder(Square(enc.spec))(ImageRecord(str(path)))
    assert err is None and img.size == (48, 48)  # the encoder's one resize ran in the worker
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    img, err = _decoder(enc)(ImageRecord(str(bad)))
    assert img is None and err
