"""Encoded image bytes -> float32 [H, W, 3] in [0, 1]: the one preprocessing used in training and serving.

Training extracts features with these TensorFlow ops and the exported serving graph embeds the very
same function, so the two can never disagree on a pixel (the skew that cost accuracy in
tensorflow#34960).

Before anything is decoded, the header is checked in the graph (retrain.images.headers): the format, the
pixel count against `max_pixels`, animated WebPs and colour-palette BMPs are refused with a
tf.errors.InvalidArgumentError, which TF Serving maps to HTTP 400. A JPEG's EXIF orientation is
applied (retrain.images.orientation), so phone photos come out upright.

Photos are large: a 12-megapixel JPEG is 4032 x 3024 and the model sees 224 x 224. A JPEG is decoded
at the largest DCT scale (1/2, 1/4 or 1/8, tf.io.decode_jpeg's `ratio`) that keeps both sides at least
the target size, which skips most of the inverse DCT and colour work and makes the decoded image 64
times smaller; every format is then resized with an antialiased (triangle) filter, which averages all
the pixels an output pixel covers. Plain bilinear sampling read about one pixel in eighteen each way of
such a photo, so fine texture turned into aliasing noise. Upscaling is unchanged (the triangle filter is
bilinear interpolation when enlarging). PNG, WebP, BMP and GIF have no DCT scaling: they are decoded at
full size, then resized the same way.
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
# 5: large JPEGs are decoded at a DCT scale (1/2 to 1/8) and every image is downscaled with antialiasing.
# 6: images enlarged to the input size use the plain bilinear op (equal to 2e-7; cheaper on small images).
PREPROCESS_VERSION = 6

_JPEG_RATIOS = (1, 2, 4, 8)  # the scales libjpeg decodes at inside the DCT; `ratio` is an op attribute

# map_fn runs 10 iterations at once by default: with 50-megapixel images that is tens of GB.
PARALLEL_DECODES = 4


def jpeg_ratio(sides: tf.Tensor, image_size: int) -> tf.Tensor:
    """int32 index into _JPEG_RATIOS: the largest ratio r keeping both decoded sides ceil(side / r) >= image_size.

    sides: int64 [2], a JPEG's stored height and width. The target is square, so an EXIF quarter turn
    (applied after decoding) cannot change which ratio fits. A side already below image_size gives 0 (r = 1).
    """
    small = tf.reduce_min(sides)
    fits = [tf.cast((small + r - 1) // r >= image_size, tf.int32) for r in _JPEG_RATIOS[1:]]
    return sum(fits[1:], fits[0])  # the ratios that fit are a prefix of _JPEG_RATIOS: their count is the index


def _decode_jpeg(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [h, w, C] of a JPEG at the largest DCT scale that keeps both sides >= image_size.

    channels=0 gives the file's own channels, as decode_image does (at ratio 1 the two are identical).
    """
    ratio = jpeg_ratio(headers.jpeg_sides(image_bytes), image_size)
    return tf.switch_case(ratio, [lambda r=r: tf.io.decode_jpeg(image_bytes, channels=0, ratio=r)
                                  for r in _JPEG_RATIOS])


def _jpeg(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """float32 [h, w, C] in [0, 1] of a JPEG, DCT-scaled (_decode_jpeg)."""
    return tf.image.convert_image_dtype(_decode_jpeg(image_bytes, image_size), tf.float32)


def _decode(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor, image_size: int) -> tf.Tensor:
    """float32 [H, W, C] in [0, 1] with the file's own C; a 16-bit PNG keeps all 16 bits; a JPEG comes DCT-scaled.

    decode_image(dtype=uint8) keeps only the high byte of a 16-bit PNG; dtype=uint16 scales 8-bit
    JPEG/GIF/BMP by 256, not 257 (white becomes 0.996), and both uint16 and float32 fail on WebP.
    So only 16-bit PNGs take the uint16 path, and every other 8-bit file decodes as before.
    """
    png16 = tf.equal(code, PNG) & tf.equal(head[24], 16)  # IHDR bit depth

    def sixteen():
        return tf.image.convert_image_dtype(tf.io.decode_png(image_bytes, channels=0, dtype=tf.uint16), tf.float32)

    def eight():
        image = tf.io.decode_image(image_bytes, channels=0, expand_animations=False, dtype=tf.uint8)
        return tf.image.convert_image_dtype(image, tf.float32)

    return tf.case([(png16, sixteen), (tf.equal(code, JPEG), lambda: _jpeg(image_bytes, image_size))], default=eight)


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8/uint16/float32 [H, W, C] with C in 1..4 -> float32 [H, W, 3] in [0, 1]; alpha is composited on white."""
    x = tf.image.convert_image_dtype(image, tf.float32)
    channels = tf.shape(x)[-1]

    # tile is what tf.image.grayscale_to_rgb runs, without its 50 ops of rank checks (each traced op
    # costs a decoder's start-up about 0.4 ms).
    def gray():
        return tf.tile(x[..., :1], [1, 1, 3])

    def gray_alpha():
        return tf.tile(x[..., :1], [1, 1, 3]) * x[..., 1:2] + (1.0 - x[..., 1:2])

    def rgb():
        return x[..., :3]

    def rgba():
        return x[..., :3] * x[..., 3:4] + (1.0 - x[..., 3:4])

    return tf.switch_case(channels - 1, [gray, gray_alpha, rgb, rgba])


def decode_resize(image_bytes: tf.Tensor, image_size: int, max_pixels: int, jpeg_only: bool = False) -> tf.Tensor:
    """One encoded image (scalar string) -> float32 [image_size, image_size, 3] in [0, 1].

    JPEG, PNG (8 or 16 bit), GIF (first frame), BMP or still WebP; gray becomes RGB and alpha is
    composited on white; a large JPEG is decoded DCT-scaled (jpeg_ratio); the resize is
    tf.image.resize's bilinear with antialias=True (a triangle filter as wide as the scale); a JPEG is
    then turned upright as its EXIF orientation says (flips and quarter turns commute with a separable,
    symmetric resize to a square, so turning the small result costs next to nothing).
    Raises tf.errors.InvalidArgumentError for bytes that are not such an image, for an animated
    WebP and for more than max_pixels pixels (width x height), before decoding anything.

    jpeg_only: a graph for bytes the caller knows start with headers.JPEG_MAGIC (it refuses others). It
    holds the very ops a JPEG takes through the full graph, so the same pixels and the same refusals,
    without the other formats' checks and decoders: 436 ops in 22 functions against 1,164 in 40, so
    the trace and first call of a decoder that only meets JPEGs take ~0.35 s instead of ~0.85 s. The
    serving graph is the full one.
    """
    if jpeg_only:
        refusals = headers.jpeg_checks(image_bytes, max_pixels)
    else:
        head = headers.header(image_bytes)
        code = headers.format_code(head)
        refusals = headers.checks(image_bytes, head, code, max_pixels)
    with tf.control_dependencies(refusals):
        checked = tf.identity(image_bytes)  # every decode below waits for the checks
    image = _to_rgb(_jpeg(checked, image_size) if jpeg_only else _decode(checked, head, code, image_size))
    # Enlarging needs no antialiasing (the filter is then plain bilinear, to 2e-7), and the plain op is the
    # cheaper one for the small images most folders hold; shrinking averages every source pixel.
    shape = tf.shape(image)
    image = tf.cond(tf.reduce_all(shape[:2] <= image_size),
                    lambda: tf.image.resize(image, [image_size, image_size], method="bilinear"),
                    lambda: tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True))
    # Only JPEGs pay for the EXIF parse (a few hundred small ops, ~0.5 ms); tf.cond skips it for the rest.
    turn = orientation.jpeg_orientation(checked) if jpeg_only else tf.cond(
        tf.equal(code, JPEG), lambda: orientation.jpeg_orientation(checked), lambda: tf.constant(1))
    return tf.ensure_shape(orientation.apply(image, turn), [image_size, image_size, 3])


def decode_batch(images: tf.Tensor, image_size: int, max_pixels: int, jpeg_only: bool = False) -> tf.Tensor:
    """String [N] of encoded images -> float32 [N, image_size, image_size, 3]; sizes may differ per element.

    N = 0 gives a [0, image_size, image_size, 3] tensor and no error. One bad element fails the batch.
    jpeg_only: every element starts with headers.JPEG_MAGIC (see decode_resize).
    At most PARALLEL_DECODES images are in flight, each peaking at 12 (RGB JPEG) to 40 (RGBA PNG)
    bytes per pixel (measured), so a batch needs at most about 4 x 40 x max_pixels bytes.
    """
    return tf.map_fn(
        lambda b: decode_resize(b, image_size, max_pixels, jpeg_only),
        images,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
        parallel_iterations=PARALLEL_DECODES,
    )
