"""Augmentation: deterministic per (image, view, seed), parameters in the units they state, pixels in [0, 1]."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from retrain.images import augment
from retrain.images.augment import AugmentSettings

NONE = AugmentSettings(flip=False, max_rotation_degrees=0.0, min_crop_fraction=1.0, max_brightness_delta=0.0,
                       max_contrast_change=0.0)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """float32 [3, 32, 32, 3]: a gradient, a left-half square and noise, all in [0, 1]."""
    rng = np.random.default_rng(1)
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32)[None, :, None], (32, 1, 3))
    half = np.zeros((32, 32, 3), np.float32)
    half[8:24, 2:12] = 1.0
    return np.stack([ramp, half, rng.uniform(size=(32, 32, 3)).astype(np.float32)])


def test_a_view_is_the_same_in_any_batch_and_run(images):
    first = augment.augment(images, view=2, seed=5)
    assert np.array_equal(first, augment.augment(images, view=2, seed=5))
    assert np.array_equal(first[1:2], augment.augment(images[1:2], view=2, seed=5))
    assert np.array_equal(first[::-1], augment.augment(images[::-1], view=2, seed=5))


def test_views_and_seeds_give_different_pixels(images):
    base = augment.augment(images, view=0, seed=0)
    assert not np.allclose(base, augment.augment(images, view=1, seed=0))
    assert not np.allclose(base, augment.augment(images, view=0, seed=1))


def test_output_keeps_shape_dtype_and_range(images):
    strong = AugmentSettings(max_rotation_degrees=45.0, min_crop_fraction=0.5, max_brightness_delta=0.5,
                             max_contrast_change=0.9)
    out = augment.augment(images, view=3, seed=0, settings=strong)
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_all_off_is_the_identity(images):
    assert np.allclose(augment.augment(images, view=1, seed=0, settings=NONE), images, atol=1e-5)


def test_flip_alone_mirrors_or_keeps_each_image(images):
    flip_only = dataclasses.replace(NONE, flip=True)
    seen = set()
    for view in range(8):
        out = augment.augment(images[1:2], view=view, seed=0, settings=flip_only)[0]
        mirrored = np.allclose(out, images[1, :, ::-1], atol=1e-5)
        assert mirrored or np.allclose(out, images[1], atol=1e-5)
        seen.add(mirrored)
    assert seen == {True, False}


def test_rotation_is_in_degrees_up_to_the_maximum():
    settings = dataclasses.replace(NONE, max_rotation_degrees=10.0)
    angles = []
    for view in range(200):
        coefficients, _, _ = augment._transform(np.random.default_rng([view]), 32, settings)
        angles.append(math.degrees(math.atan2(coefficients[3], coefficients[0])))
    assert max(abs(a) for a in angles) <= 10.0 + 1e-6
    assert max(abs(a) for a in angles) > 8.0  # the bound is reached: degrees, not fractions of a turn


def test_crop_fraction_bounds_the_zoom():
    settings = dataclasses.replace(NONE, min_crop_fraction=0.8)
    scales = [np.hypot(*augment._transform(np.random.default_rng([v]), 32, settings)[0][[0, 3]]) for v in range(200)]
    assert 0.8 - 1e-6 <= min(scales) and max(scales) <= 1.0 + 1e-6


def test_settings_key_names_every_parameter():
    key = augment.settings_key(AugmentSettings())
    assert key == augment.settings_key(AugmentSettings()) and len(key) == 16
    changed = [dataclasses.replace(AugmentSettings(), **{f.name: v}) for f, v in
               zip(dataclasses.fields(AugmentSettings), (False, 5.0, 0.9, 0.05, 0.1))]
    assert len({augment.settings_key(s) for s in changed} | {key}) == 6


def test_out_of_range_settings_are_refused():
    with pytest.raises(ValueError, match="max_rotation_degrees"):
        AugmentSettings(max_rotation_degrees=90.0)
    with pytest.raises(ValueError, match="min_crop_fraction"):
        AugmentSettings(min_crop_fraction=1.5)


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="expected"):
        augment.augment(np.zeros((2, 8, 9, 3), np.float32), view=0, seed=0)
