"""EXIF orientation: all 8 orientations come out upright, as PIL.ImageOps.exif_transpose shows them.

The JPEGs are built here: Pillow encodes the pixels as stored and the APP1 Exif segment is written
byte by byte, so each case (byte order, segment position, malformed blocks) is exactly the one named.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from retrain.images import orientation
from retrain.images.preprocess import decode_resize

S = 20  # under half the 32-pixel side: decoded at full size (a DCT-scaled decode is tested in test_photos)
# exif_transpose's transform for each orientation; storing the inverse makes the shown image upright.
_SHOWN = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}
_INVERSE = {**{k: t for k, t in _SHOWN.items()}, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def upright() -> Image.Image:
    """32 x 48 (w x h) blocks of 8 x 8 distinct colours: every flip and turn changes it."""
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)
    return Image.fromarray(np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1))


def tiff_block(k: int, order: str = "MM", extra_entries: int = 0) -> bytes:
    """A TIFF header and IFD0 holding `extra_entries` other tags, then Orientation = k."""
    e = ">" if order == "MM" else "<"
    entries = [struct.pack(e + "HHIHH", 0x9000 + i, 3, 1, 7, 0) for i in range(extra_entries)]
    entries.append(struct.pack(e + "HHIHH", 0x0112, 3, 1, k, 0))
    return (order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", len(entries))
            + b"".join(entries) + b"\0\0\0\0")


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg(image: Image.Image, exif: bytes | None, after_jfif: bool = True) -> bytes:
    """JPEG of `image` with the APP1 payload `exif` first, or after the JFIF APP0 segment."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=100, subsampling=0)
    data = buffer.getvalue()
    assert data[2:4] == b"\xff\xe0"  # Pillow writes JFIF APP0 first
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    app0, rest = data[2:app0_end], data[app0_end:]
    app1 = segment(0xE1, exif) if exif is not None else b""
    return b"\xff\xd8" + (app0 + app1 if after_jfif else app1 + app0) + rest


def decoded(data: bytes) -> np.ndarray:
    return decode_resize(tf.constant(data), S, 10**8).numpy()


def expected(data: bytes) -> np.ndarray:
    """What a viewer shows: Pillow's decode turned by exif_transpose, resized like training."""
    shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"), np.float32) / 255
    return tf.image.resize(shown, [S, S], method="bilinear", antialias=True).numpy()


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("order", ["MM", "II"])
def test_every_orientation_comes_out_upright(k, order):
    stored = upright().transpose(_INVERSE[k]) if k > 1 else upright()
    data = jpeg(stored, b"Exif\0\0" + tiff_block(k, order, extra_entries=3))
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (32, 48)
    np.testing.assert_allclose(decoded(data), expected(data), atol=3 / 255)
    upright_pixels = tf.image.resize(np.asarray(upright(), np.float32) / 255, [S, S], antialias=True).numpy()
    np.testing.assert_allclose(decoded(data), upright_pixels, atol=6 / 255)


@pytest.mark.parametrize("k", [3, 6, 8])
def test_exif_written_by_pillow_and_app1_first(k):
    stored = upright().transpose(_INVERSE[k])
    exif = Image.Exif()
    exif[0x0112] = k
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=100, subsampling=0, exif=exif)
    np.testing.assert_allclose(decoded(buffer.getvalue()), expected(buffer.getvalue()), atol=3 / 255)
    first = jpeg(stored, b"Exif\0\0" + tiff_block(k), after_jfif=False)
    assert first[2:4] == b"\xff\xe1"
    np.testing.assert_allclose(decoded(first), expected(first), atol=3 / 255)


def _orientation(data: bytes) -> int:
    return int(tf.function(orientation.jpeg_orientation)(tf.constant(data)))


@pytest.mark.parametrize("name,exif", [
    ("no EXIF", None),
    ("empty APP1", b""),
    ("Exif header only", b"Exif\0\0"),
    ("truncated TIFF header", b"Exif\0\0MM\0*\0\0"),
    ("bad byte order", b"Exif\0\0XX" + tiff_block(6)[2:]),
    ("IFD offset past the end", b"Exif\0\0MM\0*\xff\xff\xff\xf0"),
    ("entry count past the end", b"Exif\0\0" + tiff_block(6)[:8] + b"\xff\xff"),
    ("orientation 0", b"Exif\0\0" + tiff_block(0)),
    ("orientation 9", b"Exif\0\0" + tiff_block(9)),
    ("orientation 60000", b"Exif\0\0" + tiff_block(60000)),
    ("XMP, not Exif", b"http://ns.adobe.com/xap/1.0/\0" + tiff_block(6)),
])
def test_missing_or_malformed_exif_reads_as_stored(name, exif):
    data = jpeg(upright(), exif)
    assert _orientation(data) == 1
    np.testing.assert_allclose(decoded(data), expected(jpeg(upright(), None)), atol=3 / 255)


def test_orientation_beyond_the_entry_limit_is_ignored_not_an_error():
    data = jpeg(upright(), b"Exif\0\0" + tiff_block(6, extra_entries=orientation._MAX_ENTRIES))
    assert _orientation(data) == 1
    assert _orientation(jpeg(upright(), b"Exif\0\0" + tiff_block(6, extra_entries=10))) == 6


@pytest.mark.parametrize("cut", [4, 10, 20, 30, 45])
def test_a_jpeg_cut_inside_its_exif_reads_as_stored_without_crashing(cut):
    data = jpeg(upright(), b"Exif\0\0" + tiff_block(6))[:cut + 20]
    assert _orientation(data) in (1, 6)
    assert _orientation(data[:cut]) == 1


def test_other_formats_ignore_exif():
    """PNG and WebP carry EXIF rarely; only JPEG's is applied (documented policy)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    upright().save(buffer, "PNG", exif=exif)
    shown = tf.image.resize(np.asarray(upright(), np.float32) / 255, [S, S], antialias=True).numpy()
    np.testing.assert_allclose(decoded(buffer.getvalue()), shown, atol=1e-6)
