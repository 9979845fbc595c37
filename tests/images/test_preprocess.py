"""Bytes -> pixels: every format, colour handling, 16-bit PNGs and the header checks.

Decoding that can abort the process (animated WebP) is exercised in serve_check's subprocess; here
only checks that cannot crash us run in process.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from retrain.images.preprocess import PREPROCESS_VERSION, decode_batch, decode_resize
from serving_fixture import bad_samples, encode, huge_png, png16_gradient

S = 16
BIG = 50_000_000


@functools.cache
def _traced(size: int, max_pixels: int):
    """One traced graph per setting: tracing costs more than a decode."""
    return tf.function(lambda b: decode_resize(b, size, max_pixels), input_signature=[tf.TensorSpec([], tf.string)])


def pixels(data: bytes, size: int = S, max_pixels: int = BIG, graph: bool = False) -> np.ndarray:
    """decode_resize run in a tf.function (as training and serving run it) or eagerly."""
    if graph:
        return _traced(size, max_pixels)(tf.constant(data)).numpy()
    return decode_resize(tf.constant(data), size, max_pixels).numpy()


def solid(mode: str, colour, fmt: str, size=(S, S), **options) -> bytes:
    return encode(Image.new(mode, size, colour), fmt, **options)


@pytest.mark.parametrize("fmt,options,atol", [
    ("PNG", {}, 1e-6), ("BMP", {}, 1e-6), ("GIF", {}, 1e-6), ("WEBP", {"lossless": True}, 1e-6),
    ("JPEG", {"quality": 95}, 3 / 255), ("WEBP", {"quality": 95}, 4 / 255)])
@pytest.mark.parametrize("graph", [False, True])
def test_each_format_gives_the_colour_in_unit_range(fmt, options, atol, graph):
    image = pixels(solid("RGB", (10, 200, 30), fmt, **options), graph=graph)
    assert image.shape == (S, S, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, np.broadcast_to(np.array([10, 200, 30]) / 255, image.shape), atol=atol)


def test_gray_becomes_three_equal_channels():
    image = pixels(solid("L", 77, "PNG"))
    np.testing.assert_allclose(image, 77 / 255, atol=1e-6)


@pytest.mark.parametrize("mode,colour", [("RGBA", (255, 0, 0, 0)), ("LA", (0, 0))])
def test_transparent_pixels_become_white(mode, colour):
    np.testing.assert_allclose(pixels(solid(mode, colour, "PNG")), 1.0, atol=1e-6)


def test_half_alpha_is_composited_on_white():
    image = pixels(solid("RGBA", (0, 0, 255, 128), "PNG"))
    alpha = 128 / 255
    np.testing.assert_allclose(image[0, 0], [1 - alpha, 1 - alpha, 1.0], atol=1e-6)


def test_still_webp_with_alpha_uses_vp8x_and_decodes():
    data = solid("RGBA", (0, 0, 0, 0), "WEBP", lossless=True)
    assert data[12:16] == b"VP8X" or data[12:16] == b"VP8L"
    np.testing.assert_allclose(pixels(data), 1.0, atol=1e-6)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (S, S), c) for c in [(255, 0, 0), (0, 255, 0)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(pixels(data)[..., 0], 1.0, atol=1e-6)


def test_sixteen_bit_png_keeps_full_range_and_precision():
    data, raw = png16_gradient(S, S)
    image = pixels(data, size=S)  # same size: bilinear resize is the identity
    np.testing.assert_allclose(image, raw / 65535.0, atol=1e-6)
    assert image.min() == 0.0 and image.max() == pytest.approx(1.0)


def test_eight_bit_files_decode_exactly_as_their_uint8_values():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    expected = tf.image.convert_image_dtype(array, tf.float32).numpy()  # the pixels of PREPROCESS_VERSION 1
    np.testing.assert_array_equal(pixels(encode(Image.fromarray(array), "PNG")), expected)


def test_resize_is_antialiased_bilinear():
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    expected = tf.image.resize(array.astype(np.float32) / 255, [S, S], method="bilinear", antialias=True).numpy()
    np.testing.assert_allclose(pixels(encode(Image.fromarray(array), "PNG")), expected, atol=1e-6)


def _webp_cases():
    rgb, rgba = Image.new("RGB", (10, 7), (1, 2, 3)), Image.new("RGBA", (10, 7), (1, 2, 3, 100))
    return {"VP8": encode(rgb, "WEBP"), "VP8L": encode(rgb, "WEBP", lossless=True), "VP8X": encode(rgba, "WEBP")}


@pytest.mark.parametrize("name", ["PNG", "GIF", "BMP", "JPEG", "VP8", "VP8L", "VP8X"])
def test_pixel_limit_reads_each_header_exactly(name):
    files = {fmt: solid("RGB", (1, 2, 3), fmt, size=(10, 7)) for fmt in ["PNG", "GIF", "BMP", "JPEG"]}
    data = {**files, **_webp_cases()}[name]
    if name.startswith("VP8"):
        assert data[12:16] == name.ljust(4).encode()
    assert pixels(data, max_pixels=70).shape == (S, S, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="70 pixels .* expected at most 69"):
        pixels(data, max_pixels=69, graph=True)


def test_a_huge_png_is_refused_before_decoding():
    with pytest.raises(tf.errors.InvalidArgumentError, match="400000000 pixels"):
        pixels(huge_png(), graph=True)


@pytest.mark.parametrize("name,data", sorted(bad_samples(solid("RGB", (1, 2, 3), "JPEG")).items()))
@pytest.mark.parametrize("graph", [False, True])
def test_bytes_that_are_not_images_raise_invalid_argument(name, data, graph):
    with pytest.raises(tf.errors.InvalidArgumentError):
        pixels(data, graph=graph)


def test_unknown_formats_say_what_is_expected():
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG, PNG, GIF, BMP or WebP file"):
        pixels(b"GIF7 is not a format", graph=True)


def test_animated_webp_flag_is_refused_without_decoding():
    """A VP8X header with the animation bit and no frames: the check must fire before any decoder."""
    header = b"RIFF\x1e\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x02\x00\x00\x00\x09\x00\x00\x09\x00\x00"
    with pytest.raises(tf.errors.InvalidArgumentError, match="animated WebP"):
        pixels(header + b"\x00" * 8, graph=True)


def test_decode_batch_mixes_sizes_and_formats():
    files = [solid("RGB", (9, 9, 9), "JPEG", size=(50, 20)), solid("L", 3, "PNG", size=(5, 8)),
             solid("RGBA", (1, 2, 3, 4), "PNG")]
    assert decode_batch(tf.constant(files), S, BIG).shape == (3, S, S, 3)


def test_empty_batch_gives_an_empty_tensor():
    batch = tf.function(lambda b: decode_batch(b, S, BIG))(tf.constant([], tf.string))
    assert batch.shape == (0, S, S, 3) and batch.dtype == tf.float32


def test_preprocess_version_names_the_current_pixels():
    assert PREPROCESS_VERSION == 6


def test_enlarging_without_antialiasing_gives_the_antialiased_pixels():
    """Why decode_resize uses the plain op when it enlarges: the triangle filter is then plain bilinear."""
    small = tf.constant(np.random.default_rng(0).random((20, 28, 3)), tf.float32)
    plain = tf.image.resize(small, [224, 224], method="bilinear")
    smooth = tf.image.resize(small, [224, 224], method="bilinear", antialias=True)
    np.testing.assert_allclose(plain.numpy(), smooth.numpy(), atol=1e-6)


def test_colour_palette_bmp_is_refused_and_a_gray_ramp_bmp_decodes():
    """TensorFlow outputs an 8-bit BMP's palette indices as gray: right only for the gray ramp."""
    with pytest.raises(tf.errors.InvalidArgumentError, match="BMP with a colour palette"):
        pixels(encode(Image.new("RGB", (S, S), (200, 30, 60)).convert("P"), "BMP"), graph=True)
    np.testing.assert_allclose(pixels(solid("L", 77, "BMP"), graph=True), 77 / 255, atol=1e-6)
    rgb = pixels(solid("RGB", (200, 30, 60), "BMP"))
    np.testing.assert_allclose(rgb, np.broadcast_to(np.array([200, 30, 60]) / 255, rgb.shape), atol=1e-6)
