"""Training-time augmentation: flip, small rotation, crop/zoom, brightness and contrast.

Used only to make extra training views, never inside the exported graph. A view is a pure function
of (image pixels, view index, seed, settings): its random parameters come from a NumPy generator
seeded with those, so view v of an image is the same in every run and can be cached like features,
under a key that includes `settings_key(settings)` and the view index.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import tensorflow as tf

# Bump when the same settings would produce different pixels (a cached view must never go stale).
AUGMENT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    # Mirror left-right with probability 1/2; off for classes where handedness matters (text, digits).
    flip: bool = True
    # Rotation uniform in [-max, +max], in DEGREES (not fractions of a turn): small, so upright stays upright.
    max_rotation_degrees: float = 10.0
    # Crop side uniform in [min, 1], as a FRACTION OF THE IMAGE SIDE, placed uniformly, then resized back
    # to the full side (a zoom of up to 1/min = 1.18x).
    min_crop_fraction: float = 0.85
    # Brightness: add uniform [-max, +max] to every pixel, in units of the [0, 1] PIXEL RANGE.
    max_brightness_delta: float = 0.1
    # Contrast: scale each channel's deviation from its mean by a FACTOR uniform in [1 - max, 1 + max].
    max_contrast_change: float = 0.2

    def __post_init__(self) -> None:
        for name, low, high in (("max_rotation_degrees", 0.0, 45.0), ("min_crop_fraction", 0.5, 1.0),
                                ("max_brightness_delta", 0.0, 0.5), ("max_contrast_change", 0.0, 0.9)):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name}: found {getattr(self, name)}, expected {low} to {high}")


def settings_key(settings: AugmentSettings) -> str:
    """16 hex digits naming the settings and AUGMENT_VERSION: part of every cached view's key."""
    ident = {"version": AUGMENT_VERSION, **dataclasses.asdict(settings)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _generator(image: np.ndarray, view: int, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(np.ascontiguousarray(image, np.float32).tobytes()).digest()
    return np.random.default_rng([int.from_bytes(digest[:8], "little"), view, seed])


def _transform(rng: np.random.Generator, side: int, s: AugmentSettings) -> tuple[np.ndarray, float, float]:
    """(8 projective coefficients mapping output to input pixels, brightness delta, contrast factor)."""
    angle = math.radians(rng.uniform(-s.max_rotation_degrees, s.max_rotation_degrees))
    scale = rng.uniform(s.min_crop_fraction, 1.0)
    shift = rng.uniform(-1.0, 1.0, 2) * (1.0 - scale) * side / 2.0  # keeps the crop inside the image
    flip = s.flip and rng.uniform() < 0.5
    centre = (side - 1) / 2.0
    to_centre = np.array([[1, 0, -centre], [0, 1, -centre], [0, 0, 1]])
    mirror = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    rotate_zoom = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    back = np.array([[1, 0, centre + shift[0]], [0, 1, centre + shift[1]], [0, 0, 1]])
    matrix = back @ rotate_zoom @ mirror @ to_centre
    brightness = rng.uniform(-s.max_brightness_delta, s.max_brightness_delta)
    contrast = rng.uniform(1.0 - s.max_contrast_change, 1.0 + s.max_contrast_change)
    return matrix.reshape(-1)[:8].astype(np.float32), brightness, contrast


def augment(images: np.ndarray, view: int, seed: int, settings: AugmentSettings = AugmentSettings()) -> np.ndarray:
    """View `view` of each image: float32 [N, S, S, 3] in [0, 1] -> float32 [N, S, S, 3] in [0, 1].

    Deterministic for (image pixels, view, seed, settings), whatever the batch it comes in. Borders
    exposed by rotation are filled by reflection, which keeps a photo's edge statistics.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
        raise ValueError(f"images: found shape {images.shape}, expected [N, S, S, 3]")
    if not len(images):
        return images.copy()
    params = [_transform(_generator(image, view, seed), images.shape[1], settings) for image in images]
    transforms = tf.constant(np.stack([p[0] for p in params]))
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(images), transforms=transforms, output_shape=tf.constant(images.shape[1:3], tf.int32),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="REFLECT")
    brightness = tf.constant([p[1] for p in params], tf.float32)[:, None, None, None]
    contrast = tf.constant([p[2] for p in params], tf.float32)[:, None, None, None]
    mean = tf.reduce_mean(moved, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((moved - mean) * contrast + mean + brightness, 0.0, 1.0).numpy()
