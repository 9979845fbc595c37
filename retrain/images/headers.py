"""Header checks in the graph: what must be refused before any decoder runs, as stock TensorFlow ops.

The first 32 bytes give the format (JPEG, PNG, GIF, BMP or WebP, tested in the order of TensorFlow's
DecodeImage; its JPEG XL decoder is refused: the size is not cheap to read) and width x height, checked
against `max_pixels` (a few-KB PNG can claim 20,000 x 20,000). Animated WebPs are refused (TF 2.21
aborts the process decoding them with channels=0), and so are 8-bit BMPs with a colour palette
(TensorFlow reads their palette indices as gray levels: wrong colours, silently). The checks are
Assert ops; run, they raise tf.errors.InvalidArgumentError, which TF Serving maps to HTTP 400.
"""
from __future__ import annotations

import tensorflow as tf

# Format codes, in the order TensorFlow's DecodeImage tests the magic bytes.
UNKNOWN, JPEG, PNG, GIF, BMP, WEBP = range(6)
_HEADER_BYTES = 32
_BMP_PALETTE_READ = 2048  # file header, DIB header (40 to 124 bytes) and up to 256 palette entries


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


def header(image_bytes: tf.Tensor) -> tf.Tensor:
    """The first 32 bytes as uint8 [32], zero-padded when the file is shorter."""
    padded = tf.strings.join([tf.strings.substr(image_bytes, 0, _HEADER_BYTES), b"\0" * _HEADER_BYTES])
    head = tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER_BYTES), tf.uint8)
    return tf.reshape(head, [_HEADER_BYTES])


def format_code(head: tf.Tensor) -> tf.Tensor:
    """int32 format code; the order matches TensorFlow's ClassifyFileFormat."""
    checks = [(WEBP, _is(head, 0, b"RIFF") & _is(head, 8, b"WEBP")), (BMP, _is(head, 0, b"BM")),
              (GIF, _is(head, 0, b"GIF8")), (PNG, _is(head, 0, b"\x89PNG\r\n\x1a\n")),
              (JPEG, _is(head, 0, b"\xff\xd8\xff"))]
    code = tf.constant(UNKNOWN)
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

    jpeg_pixels = tf.cond(tf.equal(code, JPEG), jpeg, lambda: tf.constant(0, tf.int64))
    png = _uint(head, 16, 4, big_endian=True) * _uint(head, 20, 4, big_endian=True)  # IHDR
    gif = _uint(head, 6, 2) * _uint(head, 8, 2)  # logical screen: TF's canvas size
    # BMP: int32 width and height at 18 and 22 (negative height means top-down), as TF reads them.
    bmp_w, bmp_h = (_uint(head, start, 4) for start in (18, 22))
    bmp = tf.abs(_signed32(bmp_w)) * tf.abs(_signed32(bmp_h))
    by_code = tf.stack([tf.constant(0, tf.int64), jpeg_pixels, png, gif, bmp, _webp_pixels(head)])
    return by_code[code]


def jpeg_sides(image_bytes: tf.Tensor) -> tf.Tensor:
    """int64 [2]: a JPEG's height and width as stored (before any EXIF turn), from its SOF marker.

    For the DCT scale preprocess decodes at; call it on JPEG bytes only (it raises on anything else).
    """
    return tf.io.extract_jpeg_shape(image_bytes, output_type=tf.int64)[:2]


def _palette_bmp(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor) -> tf.Tensor:
    """True for an 8-bit BMP whose palette is not the identity gray ramp (entry i = (i, i, i)).

    TensorFlow outputs an 8-bit BMP's palette indices as gray levels, right only for that ramp.
    """
    raw = tf.reshape(tf.io.decode_raw(tf.strings.substr(image_bytes, 0, _BMP_PALETTE_READ), tf.uint8), [-1])
    raw = tf.pad(raw, [[0, _BMP_PALETTE_READ - tf.shape(raw)[0]]])
    used = _uint(raw, 46, 4)  # biClrUsed; 0 means all 256
    used = tf.where((used == 0) | (used > 256), tf.constant(256, tf.int64), used)
    start = 14 + _uint(raw, 14, 4)  # after the file header and the DIB header (its size comes first)
    index = tf.clip_by_value(start + tf.range(1024, dtype=tf.int64), 0, _BMP_PALETTE_READ - 1)
    entries = tf.reshape(tf.cast(tf.gather(raw, index), tf.int64), [256, 4])[:, :3]  # B, G, R
    ramp = tf.reduce_all(tf.equal(entries, tf.range(256, dtype=tf.int64)[:, None]), axis=1)
    coloured = tf.reduce_any(tf.logical_not(ramp) & (tf.range(256, dtype=tf.int64) < used))
    return tf.equal(code, BMP) & tf.equal(_uint(head, 28, 2), 8) & coloured


def checks(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor, max_pixels: int) -> list:
    """Assert ops refusing what must not reach the decoder; they raise InvalidArgumentError when run."""
    known = tf.debugging.Assert(
        code != UNKNOWN, ["image_bytes: not a JPEG, PNG, GIF, BMP or WebP file, expected an encoded image"])
    animated = tf.equal(code, WEBP) & _is(head, 12, b"VP8X") & (tf.bitwise.bitwise_and(head[20], 2) > 0)
    still = tf.debugging.Assert(
        tf.logical_not(animated),
        ["image_bytes: animated WebP, expected a still image (JPEG, PNG, GIF, BMP or still WebP)"])
    pixels = _pixels(image_bytes, head, code)
    small = tf.debugging.Assert(
        pixels <= max_pixels,
        [tf.strings.format("image_bytes: image of {} pixels (width x height), expected at most {}",
                           (pixels, max_pixels))])
    gray = tf.debugging.Assert(
        tf.logical_not(tf.cond(tf.equal(code, BMP), lambda: _palette_bmp(image_bytes, head, code),
                               lambda: tf.constant(False))),
        ["image_bytes: BMP with a colour palette (TensorFlow would decode it as gray), expected PNG or JPEG"])
    return [known, still, small, gray]
