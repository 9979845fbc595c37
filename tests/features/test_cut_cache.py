"""Activations at the cut: computed once per image content, read back from the cache in later runs."""
from __future__ import annotations

import numpy as np

from retrain.features import cut_cache, matrix
from retrain.training.batches import array_batches


def counting_bottom(calls: list):
    def bottom(images):
        calls.append(len(images))
        return images[:, ::2, ::2, :] * 2.0
    return bottom


def test_second_pass_reads_the_cache_and_gives_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(matrix, "MEMMAP_BYTES", 0)  # activations on disk, as for a large set
    images = np.random.default_rng(0).uniform(size=(7, 8, 8, 3)).astype(np.float32)
    labels = np.arange(7) % 3
    keys = [f"{i:064x}" for i in range(7)]
    batches = array_batches(images, labels, 3)
    calls: list = []
    first, y, shape = cut_cache.activations(counting_bottom(calls), batches, keys,
                                            cut_cache.open_cut_cache(tmp_path, "m", "fp", 8, 1, 11), tmp_path / "w")
    assert sum(calls) == 7 and shape == (4, 4, 3) and first.path is not None and len(first) == 7
    rows = first.read(np.arange(7)).reshape(7, *shape)
    np.testing.assert_array_equal(rows, images[:, ::2, ::2, :] * 2.0)
    calls.clear()
    again, y_again, shape_again = cut_cache.activations(
        counting_bottom(calls), batches, keys, cut_cache.open_cut_cache(tmp_path, "m", "fp", 8, 1, 11), tmp_path / "w")
    assert sum(calls) <= 1 and shape_again == shape  # at most one image, to learn the activation shape
    assert np.array_equal(again.read(np.arange(7)), first.read(np.arange(7))) and np.array_equal(y_again, labels)
    shaped = [x for x, _ in array_batches(again, y_again, 4, shape=shape)()]
    assert [x.shape for x in shaped] == [(4, 4, 4, 3), (3, 4, 4, 3)] and np.array_equal(np.concatenate(shaped), rows)


def test_another_cut_or_module_is_another_namespace(tmp_path):
    names = {cut_cache.open_cut_cache(tmp_path, "m", fp, 8, 1, cut).folder.name
             for fp, cut in (("fp", 11), ("fp", 14), ("other", 11))}
    assert len(names) == 3


def test_without_keys_every_batch_runs(tmp_path):
    images = np.zeros((4, 8, 8, 3), np.float32)
    calls: list = []
    x, y, shape = cut_cache.activations(counting_bottom(calls), array_batches(images, np.zeros(4), 2), None,
                                        cut_cache.open_cut_cache(tmp_path, "m", "fp", 8, 1, 11), tmp_path)
    assert calls == [2, 2] and x.shape == (4, 48) and shape == (4, 4, 3) and y.dtype == np.int32
