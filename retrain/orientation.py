"""EXIF orientation of a JPEG, read and applied with stock TensorFlow ops inside the preprocessing graph.

Phones store a photo's pixels as the sensor saw them and put "rotate 90°" in EXIF tag 0x0112
(Orientation); every viewer applies it, TensorFlow's decoders do not. preprocess applies it in the
graph that training and the served model share, so both see the photo upright, as a person does.

Only a JPEG's APP1 "Exif" segment is read (where cameras and phones write it). The walk is bounded
(_MAX_SEGMENTS segments, _MAX_ENTRIES IFD0 entries) and every read is zero-padded, so a truncated or
malformed EXIF block reads as orientation 1 (as stored): a bad EXIF never refuses an image.
"""
from __future__ import annotations

import tensorflow as tf

_MAX_SEGMENTS = 16  # APPn/COM segments before the Exif one; it is first, or second after JFIF/Adobe
_MAX_ENTRIES = 64   # IFD0 entries read; cameras write about 10-20, Orientation among the first
_ORIENTATION_TAG = 0x0112
_SHORT = 3          # TIFF type of the Orientation value


def _bytes_at(data: tf.Tensor, pos: tf.Tensor, n: int) -> tf.Tensor:
    """uint8 [n]: data[pos:pos + n], zero-padded past the end (pos may lie anywhere, even past the end)."""
    size = tf.cast(tf.strings.length(data), tf.int64)
    start = tf.minimum(tf.maximum(tf.cast(pos, tf.int64), 0), size)
    padded = tf.strings.join([tf.strings.substr(data, start, tf.constant(n, tf.int64)), b"\0" * n])
    return tf.reshape(tf.io.decode_raw(tf.strings.substr(padded, 0, n), tf.uint8), [n])


def _uint(values: tf.Tensor, little: tf.Tensor) -> tf.Tensor:
    """int64 [...]: the unsigned integer in the last axis of uint8 [..., k], little- or big-endian."""
    k = values.shape[-1]
    v = tf.cast(values, tf.int64)
    le = tf.reduce_sum(v * tf.constant([256**i for i in range(k)], tf.int64), axis=-1)
    be = tf.reduce_sum(v * tf.constant([256**(k - 1 - i) for i in range(k)], tf.int64), axis=-1)
    return tf.where(little, le, be)


def _tiff_offset(data: tf.Tensor) -> tf.Tensor:
    """int64 offset of the TIFF header in a JPEG's APP1 Exif segment, or -1 if there is none."""
    def more(i, pos, found):
        return (i < _MAX_SEGMENTS) & (found < 0) & (pos >= 0)

    def step(i, pos, found):
        seg = _bytes_at(data, pos, 10)  # FF, marker, 2-byte big-endian length, "Exif\0\0"
        marker = seg[1]
        is_app = tf.equal(seg[0], 0xFF) & (((marker >= 0xE0) & (marker <= 0xEF)) | tf.equal(marker, 0xFE))
        length = _uint(seg[2:4], tf.constant(False))
        is_exif = is_app & tf.equal(marker, 0xE1) & tf.reduce_all(tf.equal(seg[4:10], list(b"Exif\0\0")))
        found = tf.where(is_exif, pos + 10, tf.constant(-1, tf.int64))
        # Anything but an APPn/COM segment (SOF, DQT, SOS, garbage) ends the walk: EXIF comes first.
        following = tf.where(is_app & (length >= 2), pos + 2 + length, tf.constant(-1, tf.int64))
        return i + 1, following, found

    start = (tf.constant(0), tf.constant(2, tf.int64), tf.constant(-1, tf.int64))  # after SOI (FF D8)
    return tf.while_loop(more, step, start)[2]


def _orientation_at(data: tf.Tensor, tiff: tf.Tensor) -> tf.Tensor:
    """int32 Orientation (1..8) from the TIFF header at `tiff`: IFD0's tag 0x0112, else 1."""
    head = _bytes_at(data, tiff, 8)
    little = tf.reduce_all(tf.equal(head[:4], list(b"II*\0")))
    big = tf.reduce_all(tf.equal(head[:4], list(b"MM\0*")))
    ifd = tiff + _uint(head[4:8], little)
    count = tf.minimum(_uint(_bytes_at(data, ifd, 2), little), _MAX_ENTRIES)
    entries = tf.reshape(_bytes_at(data, ifd + 2, 12 * _MAX_ENTRIES), [_MAX_ENTRIES, 12])
    tags, types, values = _uint(entries[:, 0:2], little), _uint(entries[:, 2:4], little), _uint(entries[:, 8:10], little)
    match = tf.equal(tags, _ORIENTATION_TAG) & tf.equal(types, _SHORT) & (tf.range(_MAX_ENTRIES, dtype=tf.int64) < count)
    value = tf.reduce_max(tf.where(match, values, 0))
    valid = (little | big) & (tiff >= 0) & (value >= 1) & (value <= 8)
    return tf.cast(tf.where(valid, value, 1), tf.int32)


def jpeg_orientation(data: tf.Tensor) -> tf.Tensor:
    """int32 scalar EXIF orientation (1..8) of JPEG bytes; 1 when there is no EXIF or it is malformed."""
    return _orientation_at(data, _tiff_offset(data))


def apply(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """[H, W, C] as stored -> as shown (upright): the transform EXIF orientation 1..8 asks for.

    The same transforms as PIL.ImageOps.exif_transpose; orientations 5 to 8 swap height and width.
    """
    flip_lr, flip_ud = tf.image.flip_left_right, tf.image.flip_up_down
    branches = [
        lambda: image,                                           # 1: as stored
        lambda: flip_lr(image),                                  # 2: mirrored
        lambda: tf.image.rot90(image, 2),                        # 3: upside down
        lambda: flip_ud(image),                                  # 4: mirrored upside down
        lambda: tf.transpose(image, [1, 0, 2]),                  # 5: mirrored, turned
        lambda: tf.image.rot90(image, 3),                        # 6: turn 90° clockwise
        lambda: flip_ud(flip_lr(tf.transpose(image, [1, 0, 2]))),  # 7: transverse
        lambda: tf.image.rot90(image, 1),                        # 8: turn 90° counter-clockwise
    ]
    return tf.switch_case(tf.minimum(tf.maximum(orientation, 1), 8) - 1, branches)
