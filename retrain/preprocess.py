"""Encoded image bytes -> float32 [H, W, 3] in [0, 1]: the one preprocessing used in training and serving.

Training extracts features with these TensorFlow ops and the exported serving graph embeds the very
same function, so the two can never disagree on a pixel (the skew that cost accuracy in
tensorflow#34960).
"""
from __future__ import annotations

import tensorflow as tf

# Bump whenever the pixels this module produces change: it is part of every feature-cache key.
PREPROCESS_VERSION = 1


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8/uint16 [H, W, C] with C in 1..4 -> float32 [H, W, 3] in [0, 1]; alpha is composited on white."""
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

    Bilinear resize as tf.image.resize does it; the first frame of an animation.
    Raises tf.errors.InvalidArgumentError for bytes that are not a decodable image.
    """
    del max_pixels  # header checks come with the serving contract
    image = tf.io.decode_image(image_bytes, channels=0, expand_animations=False, dtype=tf.uint8)
    image = _to_rgb(image)
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    return tf.ensure_shape(image, [image_size, image_size, 3])


def decode_batch(images: tf.Tensor, image_size: int, max_pixels: int) -> tf.Tensor:
    """String [N] of encoded images -> float32 [N, image_size, image_size, 3]; sizes may differ per element."""
    return tf.map_fn(
        lambda b: decode_resize(b, image_size, max_pixels),
        images,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )
