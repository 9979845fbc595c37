"""Sizes, byte counts and odd variants: the scan and the served graph agree on every file, and never crash.

Each case is a file; the scan's verdict (kept, or one line) must match what preprocess.decode_resize
does with its bytes (decodes, or InvalidArgumentError before allocating), and a kept file's pixels
must be right, alpha included.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import odd_images as odd
from retrain.inputs import formats, structure
from serving_fixture import encode

MAX_PIXELS = 10_000_000


def _graph(blob: bytes, max_pixels: int = MAX_PIXELS):
    """float32 [8, 8, 3] pixels, or the reason the graph refused the bytes."""
    import tensorflow as tf

    from retrain.images.preprocess import decode_resize

    try:
        return decode_resize(tf.constant(blob), 8, max_pixels).numpy()
    except tf.errors.InvalidArgumentError as error:
        return str(error)


def _verdict(tmp_path, blob: bytes, max_pixels: int = MAX_PIXELS) -> str | None:
    path = tmp_path / "file.bin"
    path.write_bytes(blob)
    return formats.check(path, max_pixels)


def _agree(tmp_path, blob: bytes, max_pixels: int = MAX_PIXELS):
    """(scan verdict, graph result), asserting they agree on keep versus refuse."""
    verdict, pixels = _verdict(tmp_path, blob, max_pixels), _graph(blob, max_pixels)
    assert (verdict is None) == (not isinstance(pixels, str)), (verdict, pixels)
    assert verdict is None or ("\n" not in verdict and ": " in verdict), verdict
    return verdict, pixels


SIZES = [(1, 1), (7, 3), (3, 7), (20000, 1), (1, 20000), (9, 1)]


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "L"), ("GIF", "P"), ("BMP", "RGB"), ("WEBP", "RGB")])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_real_files_of_any_small_or_thin_size_are_used_by_both(tmp_path, fmt, mode, size):
    if fmt == "WEBP" and max(size) > 16383:
        size = (min(size[0], 16383), min(size[1], 16383))
    verdict, pixels = _agree(tmp_path, encode(Image.new(mode, size, 0), fmt))
    assert verdict is None and pixels.shape == (8, 8, 3)


@pytest.mark.parametrize("blob", [
    odd.jpeg_claiming(65535, 65535), odd.jpeg_claiming(65500, 200), odd.jpeg_claiming(1, 65500),
    odd.jpeg_claiming(65501, 1), odd.jpeg_claiming(1, 65535),
    odd.png_claiming(65535, 65535), odd.png_claiming(2**31 - 1, 1), odd.png_claiming(1_000_001, 1),
    odd.png_claiming(0, 5), odd.gif_claiming(65535, 65535), odd.gif_claiming(65535, 1000, screen=(1, 1)),
    odd.gif_claiming(0, 0), odd.bmp_claiming(65535, 65535), odd.bmp_claiming(2**31 - 1, 2**31 - 1),
    odd.bmp_claiming(-(2**31), 3), odd.jpeg_claiming(0, 10),
], ids=lambda b: b[:4].hex())
def test_any_size_a_header_claims_is_used_or_one_line_in_the_scan_as_in_the_graph(tmp_path, blob):
    verdict, _ = _agree(tmp_path, blob)  # 1 x 65500 over 8 x 8 pixels of data: libjpeg pads it, both use it
    assert verdict is not None or blob == odd.jpeg_claiming(1, 65500)


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["jpeg", "png", "gif", "bmp"]), width=st.integers(0, 65535), height=st.integers(0, 65535))
def test_claimed_sizes_never_crash_the_scan(tmp_path, fmt, width, height):
    blob = getattr(odd, f"{fmt}_claiming")(width, height)
    verdict = _verdict(tmp_path, blob, max_pixels=10**6)
    assert verdict is None or ("\n" not in verdict and ": " in verdict)
    if width * height > 10**6:
        assert verdict is not None


@pytest.mark.parametrize("frame, frames, screen, max_pixels, kept", [
    ((3000, 2000), 1, (1, 1), 10**6, False),     # the bomb: a tiny screen over a huge frame
    ((3000, 2000), 1, (3000, 2000), 10**6, False),
    ((30, 20), 1, (1, 1), 10**6, True),          # a frame beyond the screen, but small: both decode it
    ((30, 20), 2, (5, 5), 10**6, True),
    ((400, 400), 60, (400, 400), 10**6, False),  # 60 frames of 160,000 pixels: over 8 x max_pixels together
    ((400, 400), 40, (400, 400), 10**6, True),
])
def test_gifs_are_sized_by_their_largest_frame_in_the_scan_and_in_the_graph(tmp_path, frame, frames, screen,
                                                                             max_pixels, kept):
    verdict, pixels = _agree(tmp_path, odd.gif_frame_beyond_screen(frame, frames, screen), max_pixels)
    assert (verdict is None) == kept, verdict
    if not kept:
        assert verdict.startswith("too large") and "pixels" in pixels


def test_the_graph_refuses_a_gif_bomb_before_allocating_its_frame():
    import tensorflow as tf

    from retrain.images import headers

    blob = odd.gif_frame_beyond_screen((8000, 8000))  # 47 KB; decoding it costs about 1 GB
    assert len(blob) < 100_000
    canvas, frames = headers.gif_frames(tf.constant(blob))
    assert int(canvas) == int(frames) == 64_000_000
    assert "64000000 pixels" in _graph(blob, 50_000_000)


@pytest.mark.parametrize("extra, after", [
    (odd.chunk(b"tEXt", b"comment\0hello", crc=0), False), (odd.chunk(b"zTXt", b"k\0\0xyz", crc=1), True),
    (odd.chunk(b"prVt", b"\1\2\3", crc=0xDEADBEEF), False), (odd.chunk(b"gAMA", b"\0\0\xb1\x8f", crc=5), False),
])
def test_a_png_with_a_bad_ancillary_crc_is_kept_and_decodes_right(tmp_path, extra, after):
    verdict, pixels = _agree(tmp_path, odd.png_with_chunk(extra, after))
    assert verdict is None
    np.testing.assert_allclose(pixels, np.broadcast_to(odd.composited(), pixels.shape), atol=1e-5)


@pytest.mark.parametrize("kind", [b"IHDR", b"IDAT", b"IEND"])
def test_a_png_with_a_bad_critical_crc_is_refused_by_both(tmp_path, kind):
    verdict, _ = _agree(tmp_path, odd.png_bad_crc(kind))
    assert verdict == f"corrupt: PNG: chunk {kind.decode()} has a bad CRC"


@pytest.mark.parametrize("options", [dict(), dict(header=108), dict(compression=6), dict(header=56),
                                     dict(header=124, side=5), dict(compression=0, header=124)])
def test_32_bit_bmps_with_v4_v5_headers_and_bgra_bit_fields_are_kept_with_their_alpha(tmp_path, options):
    verdict, pixels = _agree(tmp_path, odd.bgra_bmp(**options))
    assert verdict is None
    np.testing.assert_allclose(pixels, np.broadcast_to(odd.composited(), pixels.shape), atol=1e-5)


@pytest.mark.parametrize("options", [
    dict(masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000)),                 # R, G, B, A: TensorFlow swaps red and blue
    dict(masks=(0x00FF0000, 0x0000FF00, 0x000000FF, 0)),              # no alpha: TF would read X as alpha
    dict(header=40, masks=(0x00FF0000, 0x0000FF00, 0x000000FF)),      # 40-byte header: no alpha mask
    dict(masks=(0xF800, 0x07E0, 0x001F, 0), bits=16),                 # RGB565
    dict(compression=1),                                              # RLE
])
def test_bmp_variants_tensorflow_reads_wrong_are_refused_by_both(tmp_path, options):
    verdict, _ = _agree(tmp_path, odd.bgra_bmp(**options))
    assert verdict.startswith("unsupported format (BMP variant)")


def _sparse(path, magic: bytes, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(magic)
        handle.truncate(size)


@pytest.mark.parametrize("magic", [b"\xff\xd8\xff\xe0", b"GIF89a", b"\x89PNG\r\n\x1a\n", b"BM",
                                   b"RIFF\0\0\0\0WEBPVP8 "])
def test_a_3_gb_file_is_skipped_by_its_size_before_it_is_read(tmp_path, magic):
    path = tmp_path / "huge.bin"
    _sparse(path, magic, 3 * 2**30)
    tracemalloc.start()
    verdict = formats.check(path, 50_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert verdict == (f"too large: {3 * 2**30} bytes, expected at most {formats.max_bytes(50_000_000)} "
                       "(8 per --max-pixels pixel plus 16 MiB)")
    assert peak < 2**20


def _gif_with_comment(size: int) -> bytes:
    """A real GIF with a comment extension of 255-byte sub-blocks in front of its image, about size bytes."""
    gif = encode(Image.new("P", (4, 4), 1), "GIF")
    at = gif.find(b"\x2c")
    return gif[:at] + b"\x21\xfe" + (b"\xff" + b"c" * 255) * (size // 256) + b"\0" + gif[at:]


@pytest.mark.parametrize("make", [
    lambda n: odd.png_with_chunk(odd.chunk(b"tEXt", b"k\0" + b"v" * n)),
    lambda n: _gif_with_comment(n),
    lambda n: encode(Image.new("RGB", (8, 8)), "JPEG")[:2] + (b"\xff\xe1\xff\xff" + b"x" * 65533) * (n // 65537)
    + encode(Image.new("RGB", (8, 8)), "JPEG")[2:],
    lambda n: encode(Image.new("RGB", (8, 8)), "JPEG") + b"\0" * n,   # data appended after the image
])
def test_the_scan_reads_files_in_bounded_memory_whatever_their_size(tmp_path, make):
    path = tmp_path / "big.bin"
    path.write_bytes(make(12 * 2**20))
    tracemalloc.start()
    verdict = formats.check(path, 10**6)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert verdict is None
    assert peak < 3 * structure.WINDOW, peak
