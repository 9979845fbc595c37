"""Augmented views from files: decoded like training, augmented per view, cached per view and settings."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from retrain.backbone import resolve
from retrain.errors import RetrainError
from retrain.features import extraction, views
from retrain.images import augment
from retrain.images.augment import AugmentSettings
from retrain.training.batches import file_batches


def paths_of(folder):
    return sorted(p for p in folder.rglob("*.png"))


def test_file_batches_decode_in_path_order(colour_images):
    paths = paths_of(colour_images)[:5]
    batches = list(file_batches(paths, np.arange(5), 16, 10_000_000, 2)())
    assert [len(y) for _, y in batches] == [2, 2, 1] and [int(v) for _, y in batches for v in y] == list(range(5))
    images = np.concatenate([x for x, _ in batches])
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1


def test_a_file_that_stopped_decoding_is_left_out_or_with_strict_an_error(colour_images, tmp_path):
    paths = [Path(shutil.copy(p, tmp_path / p.name)) for p in paths_of(colour_images)[:3]]
    paths[1].write_bytes(paths[1].read_bytes()[:40])  # truncated after the features were taken
    kept = [y.tolist() for _, y in file_batches(paths, np.arange(3), 16, 10_000_000, 2)()]
    assert kept == [[0], [2]]
    with pytest.raises(RetrainError, match=f"{paths[1].name} no longer decodes"):
        list(file_batches(paths, np.arange(3), 16, 10_000_000, 2, strict=True)())


def test_a_view_is_the_augmented_decode(colour_images):
    paths = paths_of(colour_images)[:3]
    plain = next(iter(file_batches(paths, np.zeros(3), 16, 10_000_000, 3)()))[0]
    viewed = next(iter(file_batches(paths, np.zeros(3), 16, 10_000_000, 3, view=1, seed=4)()))[0]
    assert np.array_equal(viewed, augment.augment(plain, 1, 4, AugmentSettings()))


def test_view_features_are_cached_per_view_and_settings(colour_images, fake_module, tmp_path):
    info = resolve.load_info(str(fake_module))
    paths = paths_of(colour_images)
    made = extraction.Extractor(module=info, image_size=16, engine="tf", cache_dir=tmp_path / "cache", batch_size=8,
                                max_pixels=10_000_000, workdir=tmp_path / "work")
    kw = {"seed": 0, "settings": AugmentSettings()}
    rows = np.arange(len(paths))
    first = views.view_features(made, paths, view=0, **kw).read(rows)
    assert first.shape == (len(paths), 8)
    assert np.array_equal(views.view_features(made, paths, view=0, **kw).read(rows), first)
    assert not np.allclose(views.view_features(made, paths, view=1, **kw).read(rows), first)
    namespaces = {p.name for p in (tmp_path / "cache").iterdir()}
    assert len(namespaces) == 2  # one per view
    kw["settings"] = AugmentSettings(max_brightness_delta=0.0)
    views.view_features(made, paths, view=0, **kw)
    assert len(list((tmp_path / "cache").iterdir())) == 3
    # The caller's digests are the keys: the files are not hashed again for every view.
    given = [f"{i:064x}" for i in range(len(paths))]
    again = views.view_features(made, paths, view=0, digests=given, **kw)
    cache = extraction.open_cache(made, views.view_fingerprint("", kw["settings"], 0, 0))
    assert all(key in cache for key in given) and len(again) == len(paths)


def test_view_fingerprint_names_module_settings_seed_and_view():
    keys = {views.view_fingerprint(fp, s, seed, v) for fp, s, seed, v in
            (("a", AugmentSettings(), 0, 0), ("b", AugmentSettings(), 0, 0), ("a", AugmentSettings(flip=False), 0, 0),
             ("a", AugmentSettings(), 1, 0), ("a", AugmentSettings(), 0, 1))}
    assert len(keys) == 5
