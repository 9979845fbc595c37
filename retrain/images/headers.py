"""Header checks in the graph: what must be refused before any decoder runs, as stock TensorFlow ops.

The first 32 bytes give the format (JPEG, PNG, GIF, BMP or WebP, tested in the order of TensorFlow's
DecodeImage; its JPEG XL decoder is refused: the size is not cheap to read) and width x height, checked
against `max_pixels` (a few-KB PNG can claim 20,000 x 20,000). Animated WebPs are refused (TF 2.21
aborts the process decoding them with channels=0), and so are 8-bit BMPs with a colour palette
(TensorFlow reads their palette indices as gray levels: wrong colours, silently), as are BMP variants it
reads wrong (compressed, bit fields other than B, G, R, A). A GIF is sized by its largest frame (the
canvas TensorFlow allocates), walking its image descriptors, and a file over
retrain.inputs.formats.max_bytes(max_pixels) is refused: the scan skips the same files. The checks are
Assert ops; run, they raise tf.errors.InvalidArgumentError, which TF Serving maps to HTTP 400.
"""
from __future__ import annotations

import tensorflow as tf

from retrain.inputs.formats import GIF_FRAMES, max_bytes
from retrain.inputs.structure import BMP_MASKS

# Format codes, in the order TensorFlow's DecodeImage tests the magic bytes.
UNKNOWN, JPEG, PNG, GIF, BMP, WEBP = range(6)
_HEADER_BYTES = 32
JPEG_MAGIC = b"\xff\xd8\xff"  # a file starting with these is a JPEG to TensorFlow (no other format's magic starts so)
_BMP_PALETTE_READ = 2048  # file header, DIB header (40 to 124 bytes) and up to 256 palette entries


def _u8(head: tf.Tensor, i: int) -> tf.Tensor:
    return tf.cast(head[i], tf.int64)


def _uint(head: tf.Tensor, start: int, size: int, big_endian: bool = False) -> tf.Tensor:
    """Unsigned integer of `size` bytes at `start` as int64."""
    weights = [256 ** (size - 1 - i) if big_endian else 256 ** i for i in range(size)]
    # One slice, cast and dot product, not four ops a byte: the checks are traced on every first decode.
    return tf.reduce_sum(tf.cast(head[start:start + size], tf.int64) * tf.constant(weights, tf.int64))


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
              (JPEG, _is(head, 0, JPEG_MAGIC))]
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


def _jpeg_pixels(image_bytes: tf.Tensor) -> tf.Tensor:
    """int64 width x height of JPEG bytes (raises on anything else). SOF markers can sit after large APP
    segments: libjpeg finds them."""
    shape = tf.io.extract_jpeg_shape(image_bytes, output_type=tf.int64)
    return shape[0] * shape[1]


def _pixels(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor, gif: tf.Tensor) -> tf.Tensor:
    """int64 width x height the decoder will allocate for, as the header states it (gif: the largest frame's)."""
    jpeg_pixels = tf.cond(tf.equal(code, JPEG), lambda: _jpeg_pixels(image_bytes), lambda: tf.constant(0, tf.int64))
    png = _uint(head, 16, 4, big_endian=True) * _uint(head, 20, 4, big_endian=True)  # IHDR
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


def gif_frames(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """int64 (largest frame's width x largest frame's height, sum of every frame's width x height) of a GIF.

    TensorFlow's canvas is the largest frame, not the logical screen (a 1 x 1 screen may hold an
    8000 x 8000 frame), and giflib holds every frame's raster, so both are read from the image
    descriptors: a loop over the blocks, one step per block or 255-byte data sub-block, as
    retrain.inputs.structure.gif walks them. A file cut short ends the walk (the decoder refuses it).
    """
    data = tf.reshape(tf.io.decode_raw(image_bytes, tf.uint8), [-1])  # one byte per byte: cast only what is read
    size = tf.shape(data, out_type=tf.int64)[0]
    padded = tf.pad(data, [[0, 512]])  # a sub-block hop goes at most 256 bytes past the end
    tables = tf.constant([0] * 128 + [3 << (k % 8 + 1) for k in range(128)], tf.int64)  # by packed field

    def at(pos):
        pos = tf.cast(pos, tf.int64)
        return tf.where(pos < size, tf.cast(tf.gather(data, tf.clip_by_value(pos, 0, tf.maximum(size - 1, 0))),
                                            tf.int64), 0)

    def u16(pos):
        return at(pos) + 256 * at(pos + 1)

    def table(packed):  # bytes of a colour table flagged in a packed field
        return tf.gather(tables, packed)

    def skip_blocks(pos):  # the tight loop: one gather and one add per 255-byte data sub-block
        def hop(pos, n):  # past the end the zero padding reads as the terminator
            return pos + n + 1, tf.cast(tf.gather(padded, pos + n + 1), tf.int64)
        first = tf.cast(tf.gather(padded, tf.minimum(pos, size)), tf.int64)
        end, _ = tf.while_loop(lambda pos, n: n > 0, hop, (pos, first))
        return end + 1

    def step(pos, width, height, total, done):
        byte = at(pos)
        frame = tf.equal(byte, 0x2C)
        w, h = tf.where(frame, u16(pos + 5), 0), tf.where(frame, u16(pos + 7), 0)
        stop = tf.logical_not(frame) & tf.not_equal(byte, 0x21)
        blocks = tf.where(frame, pos + 11 + table(at(pos + 9)), pos + 2)
        next_pos = tf.cond(stop, lambda: pos, lambda: skip_blocks(blocks))
        return next_pos, tf.maximum(width, w), tf.maximum(height, h), total + w * h, stop

    zero = tf.constant(0, tf.int64)
    start = (13 + table(at(10)), zero, zero, zero, tf.constant(False))
    _, width, height, total, _ = tf.while_loop(lambda pos, *rest: (pos < size) & tf.logical_not(rest[-1]),
                                               step, start)
    return width * height, total


def bmp_variant_ok(image_bytes: tf.Tensor) -> tf.Tensor:
    """True for a BMP TensorFlow decodes right: 8, 24 or 32 bits uncompressed, or 32-bit bit fields
    B, G, R, A with the alpha mask in the header (V4/V5, as editors write them), as retrain.inputs.structure.bmp."""
    raw = tf.reshape(tf.io.decode_raw(tf.strings.substr(image_bytes, 0, 70), tf.uint8), [-1])
    raw = tf.pad(raw, [[0, 70 - tf.shape(raw)[0]]])
    bits, compression, dib = _uint(raw, 28, 2), _uint(raw, 30, 4), _uint(raw, 14, 4)
    masks = tf.stack([_uint(raw, at, 4) for at in (54, 58, 62, 66)])
    plain = tf.equal(compression, 0) & ((bits == 8) | (bits == 24) | (bits == 32))
    fields = ((compression == 3) | (compression == 6)) & (bits == 32) & ((dib >= 56) | (compression == 6)) \
        & tf.reduce_all(tf.equal(masks, tf.constant(BMP_MASKS, tf.int64)))
    return plain | fields


def _size_checks(image_bytes: tf.Tensor, pixels: tf.Tensor, max_pixels: int) -> list:
    """Assert ops: at most max_pixels pixels (width x height) and max_bytes(max_pixels) bytes."""
    small = tf.debugging.Assert(
        pixels <= max_pixels,
        [tf.strings.format("image_bytes: image of {} pixels (width x height), expected at most {}",
                           (pixels, max_pixels))])
    limit = max_bytes(max_pixels)
    length = tf.cast(tf.strings.length(image_bytes), tf.int64)
    short = tf.debugging.Assert(
        length <= limit, [tf.strings.format("image_bytes: file of {} bytes, expected at most {}", (length, limit))])
    return [short, small]


def jpeg_checks(image_bytes: tf.Tensor, max_pixels: int) -> list:
    """checks() for bytes known to start with JPEG_MAGIC: the only ones of its asserts a JPEG can fail.

    The decoders' own graph for JPEGs (preprocess, jpeg_only) builds just these; the format is asserted
    too, so bytes routed there by mistake are refused, not misread. The magic alone says JPEG to
    format_code (no other format's magic starts so), so the other formats' tests are not built.
    """
    magic = tf.equal(tf.strings.substr(image_bytes, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
    jpeg = tf.debugging.Assert(magic, ["image_bytes: not a JPEG file, expected one (JPEG-only graph)"])
    with tf.control_dependencies([jpeg]):  # libjpeg reads the header only after the format is known
        pixels = _jpeg_pixels(image_bytes)
    return [jpeg, *_size_checks(image_bytes, pixels, max_pixels)]


def checks(image_bytes: tf.Tensor, head: tf.Tensor, code: tf.Tensor, max_pixels: int) -> list:
    """Assert ops refusing what must not reach the decoder; they raise InvalidArgumentError when run."""
    known = tf.debugging.Assert(
        code != UNKNOWN, ["image_bytes: not a JPEG, PNG, GIF, BMP or WebP file, expected an encoded image"])
    animated = tf.equal(code, WEBP) & _is(head, 12, b"VP8X") & (tf.bitwise.bitwise_and(head[20], 2) > 0)
    still = tf.debugging.Assert(
        tf.logical_not(animated),
        ["image_bytes: animated WebP, expected a still image (JPEG, PNG, GIF, BMP or still WebP)"])
    zero = tf.constant(0, tf.int64)
    # Not for a file over the byte limit (refused anyway): the walk copies the bytes once.
    walk = tf.equal(code, GIF) & (tf.cast(tf.strings.length(image_bytes), tf.int64) <= max_bytes(max_pixels))
    canvas, frames = tf.cond(walk, lambda: gif_frames(image_bytes), lambda: (zero, zero))
    short, small = _size_checks(image_bytes, _pixels(image_bytes, head, code, canvas), max_pixels)
    gif = tf.debugging.Assert(
        frames <= GIF_FRAMES * max_pixels,
        [tf.strings.format("image_bytes: GIF frames of {} pixels together, expected at most {}",
                           (frames, GIF_FRAMES * max_pixels))])
    variant = tf.debugging.Assert(
        tf.logical_not(tf.equal(code, BMP)) | bmp_variant_ok(image_bytes),
        ["image_bytes: BMP variant (bit depth, compression or bit fields) TensorFlow does not decode right, "
         "expected PNG or JPEG"])
    gray = tf.debugging.Assert(
        tf.logical_not(tf.cond(tf.equal(code, BMP), lambda: _palette_bmp(image_bytes, head, code),
                               lambda: tf.constant(False))),
        ["image_bytes: BMP with a colour palette (TensorFlow would decode it as gray), expected PNG or JPEG"])
    return [short, known, still, small, gif, variant, gray]
