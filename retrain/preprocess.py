"""Encoded image bytes -> float32 [H, W, 3] in [0, 1]: the one preprocessing used in training and serving.

Training extracts features with these TensorFlow ops and the exported serving graph embeds the very
same function, so the two can never disagree on a pixel (the skew that cost accuracy in
tensorflow#34960).

Before anything is decoded, the first 32 bytes are checked in the graph: the format must be JPEG,
PNG, GIF, BMP or WebP (TensorFlow's JPEG XL decoder is refused: its size is not cheap to read),
width x height from the header must not exceed `max_pixels` (a few-KB PNG can claim 20,000 x
20,000), and animated WebPs are refused (TF 2.21 aborts the process decoding them with channels=0).
Every refusal is a tf.errors.InvalidArgumentError, which TF Serving maps to HTTP 400.
A JPEG's EXIF orientation is applied (retrain.orientation), so phone photos come out upright.
"""
from __future__ import annotations

import tensorflow as tf

from retrain import orientation

# Bump whenever the pixels this module produces change: it is part of every feature-cache key.
# 2: 16-bit PNGs keep 16-bit precision; header checks refuse oversized, animated-WebP and JPEG XL files.
# 3: a JPEG's EXIF orientation is applied (phone photos upright).
PREPROCESS_VERSION = 3

# Format codes, in the order TensorFlow's DecodeImage tests the magic bytes.
_UNKNOWN, _JPEG, _PNG, _GIF, _BMP, _WEBP = range(6)
_HEADER_BYTES = 32
# map_fn runs 10 iterations at once by default: with 50-megapixel images that is tens of GB.
_PARALLEL_DECODES = 4


def _u8(head: tf.Tensor, i: int) -> tf.Tensor:
    return tf.cast(head[i], tf.int64)


def _uint(head: tf.Tensor, start: int, size: int, big_endian: bool = False) -> tf.Tensor:
    """Unsigned integer of `size` bytes at `start` as int64."""
    order = range(size) if big_endian else reversed(range(size))
    value = tf.constant(0, tf.int64)
    for i in order:
        value = value * 256 + _u8(head, start + i)
    return value


def _signed32(value: tf.Tensor) -> tf.Tensor:
    return tf.where(value >= 2**31, value - 2**32, value)


def _is(head: tf.Tensor, start: int, magic: bytes) -> tf.Tensor:
    expected = tf.constant(list(magic), tf.uint8)
    return tf.reduce_all(tf.equal(head[start:start + len(magic)], expected))


def _header(image_bytes: tf.Tensor) -> tf.Tensor:
    """The first 32 bytes as uint8 [32], zero-padded when the file is shorter."""
    padded = tf.strings.join([tf.strings.substr(image_bytes, 0, _HEADER_BYTES), b"\0" * _HEADER_BYTES])
    head = tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER_BYTES), tf.uint8)
    return tf.reshape(head, [_HEADER_BYTES])


def _format(head: tf.Tensor) -> tf.Tensor:
    """int32 format code; the order matches TensorFlow's ClassifyFileFormat."""
    checks = [(_WEBP, _is(head, 0, b"RIFF") & _is(head, 8, b"WEBP")), (_BMP, _is(head, 0, b"BM")),
              (_GIF, _is(head, 0, b"GIF8")), (_PNG, _is(head, 0, b"\x89PNG\r\n\x1a\n")),
              (_JPEG, _is(head, 0, b"\xff\xd8\xff"))]
    code = tf.constant(_UNKNOWN)
    for value, matches in checks:  # later (earlier-tested) formats win, as in ClassifyFileFormat
        code = tf.where(matches, value, code)
    return code


def _webp_pixels(head: tf.Tensor) -> tf.Tensor:
    """Canvas width x height of a WebP from its first chunk (VP8X, VP8L or VP8); 0 if unknown."""
    vp8x = (_uint(head, 24, 3) + 1) * (_uint(head, 27, 3) + 1)
    bits = _uint(head, 21, 4)  # VP8L: 14 bits width-1, then 14 bits height-1, after the 0x2f signature
    vp8l = (bits % 16384 + 1) * (bits // 16384 % 16384 + 1)
    vp8 = (_uint(head, 26, 2) % 16384) * (_uint(head, 28, 2) % 16384)
    return tf.where(_is(head, 12, b"VP8X"), vp8x,
                    tf.where(_is(head, 12, b"VP8L"), vp8l, tf.where(_is(head, 12, b"VP8 "), vp8, 0)))


def _pixels(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor) -> tf.Tensor:
    """int64 width x height as the header states it, the number the decoder will allocate for."""
    def jpeg():  # SOF markers can sit after large APP segments: let libjpeg find them
        shape = tf.io.extract_jpeg_shape(image_bytes, output_type=tf.int64)
        return shape[0] * shape[1]

    jpeg_pixels = tf.cond(tf.equal(code, _JPEG), jpeg, lambda: tf.constant(0, tf.int64))
    png = _uint(head, 16, 4, big_endian=True) * _uint(head, 20, 4, big_endian=True)  # IHDR
    gif = _uint(head, 6, 2) * _uint(head, 8, 2)  # logical screen: TF's canvas size
    # BMP: int32 width and height at 18 and 22 (negative height means top-down), as TF reads them.
    bmp_w, bmp_h = (_uint(head, start, 4) for start in (18, 22))
    bmp = tf.abs(_signed32(bmp_w)) * tf.abs(_signed32(bmp_h))
    by_code = tf.stack([tf.constant(0, tf.int64), jpeg_pixels, png, gif, bmp, _webp_pixels(head)])
    return by_code[code]


def _checks(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor, max_pixels: int) -> list:
    """Assert ops refusing what must not reach the decoder; they raise InvalidArgumentError when run."""
    known = tf.debugging.Assert(
        code != _UNKNOWN, ["image_bytes: not a JPEG, PNG, GIF, BMP or WebP file, expected an encoded image"])
    animated = tf.equal(code, _WEBP) & _is(head, 12, b"VP8X") & (tf.bitwise.bitwise_and(head[20], 2) > 0)
    still = tf.debugging.Assert(
        tf.logical_not(animated),
        ["image_bytes: animated WebP, expected a still image (JPEG, PNG, GIF, BMP or still WebP)"])
    pixels = _pixels(image_bytes, head, code)
    small = tf.debugging.Assert(
        pixels <= max_pixels,
        [tf.strings.format("image_bytes: image of {} pixels (width x height), expected at most {}",
                           (pixels, max_pixels))])
    return [known, still, small]


def _decode(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor) -> tf.Tensor:
    """float32 [H, W, C] in [0, 1] with the file's own C; a 16-bit PNG keeps all 16 bits.

    decode_image(dtype=uint8) keeps only the high byte of a 16-bit PNG; dtype=uint16 scales 8-bit
    JPEG/GIF/BMP by 256, not 257 (white becomes 0.996), and both uint16 and float32 fail on WebP.
    So only 16-bit PNGs take the uint16 path, and every 8-bit file decodes exactly as before.
    """
    png16 = tf.equal(code, _PNG) & tf.equal(head[24], 16)  # IHDR bit depth

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
    head = _header(image_bytes)
    code = _format(head)
    with tf.control_dependencies(_checks(image_bytes, head, code, max_pixels)):
        checked = tf.identity(image_bytes)  # every decode below waits for the checks
    image = _to_rgb(_decode(checked, head, code))
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    turn = tf.where(tf.equal(code, _JPEG), orientation.jpeg_orientation(checked), 1)
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
