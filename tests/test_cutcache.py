"""Activations at the cut: computed once per image content, read back from the cache in later runs."""
from __future__ import annotations

import numpy as np

from retrain import cutcache, views


def counting_bottom(calls: list):
    def bottom(images):
        calls.append(len(images))
        return images[:, ::2, ::2, :] * 2.0
    return bottom


def test_second_pass_reads_the_cache_and_gives_the_same_rows(tmp_path):
    images = np.random.default_rng(0).uniform(size=(7, 8, 8, 3)).astype(np.float32)
    labels = np.arange(7) % 3
    keys = [f"{i:064x}" for i in range(7)]
    batches = views.array_batches(images, labels, 3)
    calls: list = []
    first = cutcache.activations(counting_bottom(calls), batches, keys,
                                 cutcache.open_cut_cache(tmp_path, "m", "fp", 8, 1, 11))
    assert sum(calls) == 7 and first[0].shape == (7, 4, 4, 3)
    calls.clear()
    again = cutcache.activations(counting_bottom(calls), batches, keys,
                                 cutcache.open_cut_cache(tmp_path, "m", "fp", 8, 1, 11))
    assert sum(calls) <= 1  # at most one image, to learn the activation shape
    assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], labels)


def test_another_cut_or_module_is_another_namespace(tmp_path):
    names = {cutcache.open_cut_cache(tmp_path, "m", fp, 8, 1, cut).folder.name
             for fp, cut in (("fp", 11), ("fp", 14), ("other", 11))}
    assert len(names) == 3


def test_without_keys_every_batch_runs(tmp_path):
    images = np.zeros((4, 8, 8, 3), np.float32)
    calls: list = []
    x, y = cutcache.activations(counting_bottom(calls), views.array_batches(images, np.zeros(4), 2), None,
                                cutcache.open_cut_cache(tmp_path, "m", "fp", 8, 1, 11))
    assert calls == [2, 2] and x.shape == (4, 4, 4, 3) and y.dtype == np.int32
