"""Encoded image bytes -> float32 [H, W, 3] in [0, 1]: the one preprocessing used in training and serving.

Training extracts features with these TensorFlow ops and the exported serving graph embeds the very
same function, so the two can never disagree on a pixel (the skew that cost accuracy in
tensorflow#34960).

Before anything is decoded, the header is checked in the graph (retrain.images.headers): the format, the
pixel count against `max_pixels`, animated WebPs and colour-palette BMPs are refused with a
tf.errors.InvalidArgumentError, which TF Serving maps to HTTP 400. A JPEG's EXIF orientation is
applied (retrain.images.orientation), so phone photos come out upright.
"""
from __future__ import annotations

import tensorflow as tf

from retrain.images import headers, orientation
from retrain.images.headers import JPEG, PNG

# Bump whenever the pixels this module produces change: it is part of every feature-cache key.
# 2: 16-bit PNGs keep 16-bit precision; header checks refuse oversized, animated-WebP and JPEG XL files.
# 3: a JPEG's EXIF orientation is applied (phone photos upright); colour-palette BMPs are refused.
# 4: GIFs are sized by their largest frame, files over 8 bytes per allowed pixel (+16 MiB) and BMP variants
#    TensorFlow reads wrong are refused; 32-bit B, G, R, A bit-field BMPs are decoded.
PREPROCESS_VERSION = 4

# map_fn runs 10 iterations at once by default: with 50-megapixel images that is tens of GB.
_PARALLEL_DECODES = 4


def _decode(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor) -> tf.Tensor:
    """float32 [H, W, C] in [0, 1] with the file's own C; a 16-bit PNG keeps all 16 bits.

    decode_image(dtype=uint8) keeps only the high byte of a 16-bit PNG; dtype=uint16 scales 8-bit
    JPEG/GIF/BMP by 256, not 257 (white becomes 0.996), and both uint16 and float32 fail on WebP.
    So only 16-bit PNGs take the uint16 path, and every 8-bit file decodes exactly as before.
    """
    png16 = tf.equal(code, PNG) & tf.equal(head[24], 16)  # IHDR bit depth

    def sixteen():
        return tf.image.convert_image_dtype(tf.io.decode_png(image_bytes, channels=0, dtype=tf.uint16), tf.float32)

    def eight():
        image = tf.io.decode_image(image_bytes, channels=0, expand_animations=False, dtype=tf.uint8)
        return tf.image.convert_image_dtype(image, tf.float32)

    return tf.cond(png16, sixteen, eight)


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8/uint16/float32 [H, W, C] with C in 1..4 -> float32 [H, W, 3] in [0, 1]; alpha is composited on white."""
    x = tf.image.convert_image_dtype(image, tf.float32)
    channels = tf.shape(x)[-1]

    def gray():
        return tf.image.grayscale_to_rgb(x[..., :1])

    def gray_alpha():
        return tf.image.grayscale_to_rgb(x[..., :1]) * x[..., 1:2] + (1.0 - x[..., 1:2])

    def rgb():
        return x[..., :3]

    def rgba():
        return x[..., :3] * x[..., 3:4] + (1.0 - x[..., 3:4])

    return tf.switch_case(channels - 1, [gray, gray_alpha, rgb, rgba])


def decode_resize(image_bytes: tf.Tensor, image_size: int, max_pixels: int) -> tf.Tensor:
    """One encoded image (scalar string) -> float32 [image_size, image_size, 3] in [0, 1].

    JPEG, PNG (8 or 16 bit), GIF (first frame), BMP or still WebP; gray becomes RGB and alpha is
    composited on white; bilinear resize as tf.image.resize does it (no antialiasing); a JPEG is then
    turned upright as its EXIF orientation says (flips and quarter turns commute exactly with a
    bilinear resize to a square, so turning the small result costs next to nothing).
    Raises tf.errors.InvalidArgumentError for bytes that are not such an image, for an animated
    WebP and for more than max_pixels pixels (width x height), before decoding anything.
    """
    head = headers.header(image_bytes)
    code = headers.format_code(head)
    with tf.control_dependencies(headers.checks(image_bytes, head, code, max_pixels)):
        checked = tf.identity(image_bytes)  # every decode below waits for the checks
    image = _to_rgb(_decode(checked, head, code))
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    # Only JPEGs pay for the EXIF parse (a few hundred small ops, ~0.5 ms); tf.cond skips it for the rest.
    turn = tf.cond(tf.equal(code, JPEG), lambda: orientation.jpeg_orientation(checked), lambda: tf.constant(1))
    return tf.ensure_shape(orientation.apply(image, turn), [image_size, image_size, 3])


def decode_batch(images: tf.Tensor, image_size: int, max_pixels: int) -> tf.Tensor:
    """String [N] of encoded images -> float32 [N, image_size, image_size, 3]; sizes may differ per element.

    N = 0 gives a [0, image_size, image_size, 3] tensor and no error. One bad element fails the batch.
    At most _PARALLEL_DECODES images are in flight, each peaking at 12 (RGB JPEG) to 40 (RGBA PNG)
    bytes per pixel (measured), so a batch needs at most about 4 x 40 x max_pixels bytes.
    """
    return tf.map_fn(
        lambda b: decode_resize(b, image_size, max_pixels),
        images,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
        parallel_iterations=_PARALLEL_DECODES,
    )
