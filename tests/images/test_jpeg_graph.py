"""The JPEG-only decoding graph (what training uses for JPEGs) against the full one (what the export serves).

Training and serving must see the same pixels for the same file: every kind of JPEG below goes through
both graphs and must come out bit for bit equal, and what the full graph refuses the JPEG-only one
refuses with the same words. Its twin: bytes that are not a JPEG are refused by the JPEG-only graph.
"""
from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from retrain.errors import reason
from retrain.images.headers import JPEG_MAGIC
from retrain.images.preprocess import decode_batch

S = 64
BIG = 50_000_000


@functools.cache
def graph(jpeg_only: bool, max_pixels: int = BIG):
    return tf.function(lambda b: decode_batch(b, S, max_pixels, jpeg_only),
                       input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Noise over a gradient: every DCT coefficient is used, so a scale or filter change shows."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    return Image.fromarray(np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8))


def turned(k: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = k
    return jpeg(picture(300, 200, k), exif=exif)


JPEGS = {
    "rgb_dct_scaled": jpeg(picture(1200, 900), quality=90),        # decoded at 1/8: 150 x 112 >= 64
    "rgb_quarter": jpeg(picture(300, 260), quality=90),            # 1/4
    "rgb_444": jpeg(picture(333, 222), quality=95, subsampling=0),
    "progressive": jpeg(picture(640, 480), quality=85, progressive=True),
    "gray": jpeg(picture(500, 400).convert("L")),
    "cmyk": jpeg(picture(200, 150).convert("CMYK")),
    "enlarged": jpeg(picture(20, 12)),
    **{f"exif_{k}": turned(k) for k in (3, 6, 8)},
}


@pytest.mark.parametrize("name", sorted(JPEGS))
def test_every_kind_of_jpeg_gives_the_full_graphs_pixels_exactly(name):
    data = tf.constant([JPEGS[name]])
    np.testing.assert_array_equal(graph(True)(data).numpy(), graph(False)(data).numpy())


def test_a_batch_of_them_equals_the_full_graph_too():
    data = tf.constant([JPEGS[name] for name in sorted(JPEGS)])
    np.testing.assert_array_equal(graph(True)(data).numpy(), graph(False)(data).numpy())


def refusal(jpeg_only: bool, data: bytes, max_pixels: int = BIG) -> str:
    """The one-line reason a user sees (retrain.errors.reason) for the graph's refusal of data."""
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        graph(jpeg_only, max_pixels)(tf.constant([data]))
    return reason(raised.value)


def test_the_pixel_limit_refuses_with_the_full_graphs_words():
    data = JPEGS["rgb_444"]  # 333 x 222 = 73,926 pixels
    words = refusal(True, data, max_pixels=73_925)
    assert words == "image_bytes: image of 73926 pixels (width x height), expected at most 73925"
    assert words == refusal(False, data, max_pixels=73_925)


def test_the_byte_limit_and_broken_data_are_refused_too():
    padded = JPEGS["enlarged"] + bytes(17 << 20)  # 240 pixels, but more bytes than 8 a pixel + 16 MiB
    words = refusal(True, padded, max_pixels=1_000)
    assert words.endswith("bytes, expected at most 16785216") and words == refusal(False, padded, max_pixels=1_000)
    cut = JPEGS["rgb_dct_scaled"][: len(JPEGS["rgb_dct_scaled"]) // 3]
    assert cut.startswith(JPEG_MAGIC)
    assert refusal(True, cut) == refusal(False, cut)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP"])
def test_bytes_that_are_not_a_jpeg_are_refused_by_the_jpeg_only_graph(fmt):
    buffer = io.BytesIO()
    picture(30, 20).save(buffer, fmt)
    assert "not a JPEG file" in refusal(True, buffer.getvalue())
    assert graph(False)(tf.constant([buffer.getvalue()])).shape == (1, S, S, 3)  # the full graph takes it
