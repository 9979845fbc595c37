"""Test data made on the spot: a tiny fake TF-Hub module and folders of solid-colour images.

The fake module follows the TF-Hub image feature-vector contract (float32 [N, H, W, 3] in [0, 1]
-> float32 [N, D]) with global average pooling and a fixed projection, so a linear head separates
solid colours perfectly and cannot learn labels that are random.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"blue": (20, 40, 230), "green": (30, 200, 40), "red": (220, 30, 30)}
FEATURE_DIM = 8


def save_fake_module(path: Path, image_size: int | None = None) -> Path:
    """Write a SavedModel mapping float32 [N, H, W, 3] -> [N, 8] (mean colour times a fixed matrix).

    With image_size set the input signature is fixed to [None, image_size, image_size, 3].
    """
    import tensorflow as tf

    class FakeFeatureVector(tf.Module):
        # Reusable-SavedModel attributes (what hub.KerasLayer reads): class attributes shadow
        # tf.Module's computed properties so the lists assigned below are saved.
        variables = trainable_variables = regularization_losses = None

        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(7)
            self.projection = tf.Variable(rng.normal(size=(3, FEATURE_DIM)).astype("float32"), trainable=True)
            self.offset = tf.Variable(tf.zeros([FEATURE_DIM]), trainable=True)
            self.variables = [self.projection, self.offset]
            self.trainable_variables = [self.projection, self.offset]
            self.regularization_losses = []

        @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32)])
        def __call__(self, images):
            pooled = tf.reduce_mean(images, axis=[1, 2])
            return tf.matmul(pooled * 4.0 - 2.0, self.projection) + self.offset

    module = FakeFeatureVector()
    tf.saved_model.save(module, str(path))
    return path


def write_images(root: Path, per_class: dict[str, list[tuple[int, int, int]]], size: int = 24,
                 fmt: str = "PNG") -> Path:
    """Write root/<label>/<i>.<fmt> solid-colour images; returns root."""
    for label, colours in per_class.items():
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i, rgb in enumerate(colours):
            Image.new("RGB", (size, size), rgb).save(folder / f"{i:03d}.{fmt.lower()}", fmt)
    return root


def colour_set(n: int = 12, seed: int = 0) -> dict[str, list[tuple[int, int, int]]]:
    """n slightly jittered shades of each of three colours, one class per colour."""
    rng = np.random.default_rng(seed)
    return {label: [tuple(int(c) for c in np.clip(np.array(rgb) + rng.integers(-15, 16, 3), 0, 255))
                    for _ in range(n)]
            for label, rgb in COLOURS.items()}


def random_label_set(n: int = 12, seed: int = 0) -> dict[str, list[tuple[int, int, int]]]:
    """The twin that must fail: random colours dealt to three classes at random."""
    rng = np.random.default_rng(seed)
    return {label: [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(n)] for label in COLOURS}
