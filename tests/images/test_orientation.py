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
from hypothesis import find, given, settings
from hypothesis import strategies as st
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


def rule_orientation(data: bytes) -> int:
    """The parse's rules read in plain Python, one byte at a time: the oracle for the graph's vector ops.

    Bytes past the prefix read 0, bytes before it the first byte (the graph clips its gathers).
    """
    size = orientation._PREFIX + orientation._PAD
    buffer = data[:orientation._PREFIX].ljust(size, b"\0")

    def take(pos: int, k: int) -> bytes:
        return bytes(buffer[min(max(p, 0), size - 1)] for p in range(pos, pos + k))

    pos, tiff = 2, -1
    for _ in range(orientation._MAX_SEGMENTS):
        seg = take(pos, 10)
        app = seg[0] == 0xFF and (0xE0 <= seg[1] <= 0xEF or seg[1] == 0xFE)
        if app and seg[1] == 0xE1 and seg[4:] == b"Exif\0\0" and tiff < 0:
            tiff = pos + 10
        pos = pos + 2 + seg[2] * 256 + seg[3] if app and pos >= 0 else -(1 << 40)
    head = take(tiff, 8)
    little, big = head[:4] == b"II*\0", head[:4] == b"MM\0*"

    def uint(raw: bytes) -> int:
        return int.from_bytes(raw, "little" if little else "big")

    ifd = tiff + uint(head[4:])
    count = min(uint(take(ifd, 2)), orientation._MAX_ENTRIES)
    value = 0
    for i in range(count):
        entry = take(ifd + 2 + 12 * i, 12)
        if uint(entry[:2]) == 0x0112 and uint(entry[2:4]) == 3:
            value = max(value, uint(entry[8:10]))
    return value if (little or big) and tiff >= 0 and 1 <= value <= 8 else 1


def _mostly(usual, *odd):
    """A strategy drawing `usual` three times in four, else one of `odd`."""
    return st.sampled_from([usual] * (3 * len(odd)) + list(odd))


@st.composite
def exif_prefixes(draw) -> bytes:
    """SOI, then a few segments (APPn, COM, others, EXIF with a TIFF block of either byte order, and
    odd offsets, entry counts, tags, types and values), then maybe byte flips and a cut. Well-formed
    parts are drawn most often, so turned photos are common, and every oddity is one draw away."""
    parts = [b"\xff\xd8"]
    for _ in range(draw(st.integers(1, 4))):
        marker = draw(_mostly(0xE1, 0xE0, 0xE2, 0xEF, 0xFE, 0xDB, 0xC0, 0x00))
        if marker == 0xE1 and draw(_mostly(True, False)):
            order = draw(st.sampled_from([b"II", b"MM", b"IM"]))
            e = "<" if order == b"II" else ">"
            entries = [struct.pack(e + "HHIHH", draw(_mostly(0x0112, 0x0110, 0x1201)), draw(_mostly(3, 4, 0x0300)),
                                   1, draw(st.integers(0, 10)), 0) for _ in range(draw(st.integers(0, 12)))]
            count = draw(_mostly(len(entries), 0, 65, 0xFFFF))
            tiff = order + struct.pack(e + "HIH", 42, draw(_mostly(8, 0, 7, 2**31)), count) + b"".join(entries)
            payload = draw(_mostly(b"Exif\0\0", b"Exif\0", b"XMP\0\0\0")) + tiff
        else:
            payload = draw(st.binary(max_size=24))
        parts.append(segment(marker, payload))
    data = bytearray(b"".join(parts))
    for _ in range(draw(_mostly(0, 1, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[:draw(st.integers(0, len(data)))] if draw(_mostly(False, True)) else data)


_traced_orientation = tf.function(orientation.jpeg_orientation, input_signature=[tf.TensorSpec([], tf.string)])


@settings(max_examples=300, deadline=None)
@given(exif_prefixes())
def test_the_graph_reads_orientation_by_the_rules_on_any_bytes(data):
    assert int(_traced_orientation(tf.constant(data))) == rule_orientation(data)


def test_the_fuzz_reaches_turned_photos_in_both_byte_orders():
    """The twin: the bytes the property test draws do hold orientations other than 1 (else it shows little)."""
    for order in (b"II*\0", b"MM\0*"):
        data = find(exif_prefixes(), lambda d, o=order: rule_orientation(d) in (6, 8) and o in d,
                    settings=settings(max_examples=5000, database=None))
        assert int(_traced_orientation(tf.constant(data))) == rule_orientation(data) in (6, 8)
