"""Activations at the fine-tuning cut, content-addressed like the feature cache.

When only the top blocks train, the frozen bottom's output for an image depends only on the image's
bytes, the module (fingerprint), the input size, the preprocessing and the cut, so it is computed once
and kept in a feature-cache namespace of its own (rows are the flattened [h, w, c] activations).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from retrain.features.cache import FeatureCache, for_module
from retrain.features.matrix import FeatureMatrix

log = logging.getLogger(__name__)

SHARD_ROWS = 256  # 14x14x112 float32 is 88 KB a row: shards of ~22 MB


def open_cut_cache(cache_dir: Path, module_id: str, fingerprint: str, image_size: int, preprocess_version: int,
                   cut: int) -> FeatureCache:
    """The namespace of the activations entering block `cut` of this module at this size."""
    return for_module(cache_dir, module_id, f"{fingerprint}+cut{cut}", image_size, preprocess_version)


def activations(bottom: Callable[[np.ndarray], np.ndarray], batches, keys: list[str] | None,
                cache: FeatureCache | None, workdir: Path) -> tuple[FeatureMatrix, np.ndarray, tuple[int, ...]]:
    """(FeatureMatrix of the flattened activations, int32 labels [N], their shape [h, w, c]) of a set.

    bottom: images [B, S, S, 3] -> activations [B, h, w, c]; batches: training.batches.Batches yielding (images,
    labels) in the order of keys (SHA-256 of each file). A batch whose keys are all cached is read, not
    run; others are run and written. Without cache or keys every batch runs. The matrix has len(batches)
    rows, of which the first N are filled, and is file-backed under workdir when large (Lite0's cut at
    block 11 is 88 KB an image: 5 GB for 60,000 images).
    """
    matrix, labels, done, computed, shape = None, [], 0, 0, None
    writer = cache.writer(SHARD_ROWS) if cache is not None and keys is not None else None
    for images, y in batches():
        batch_keys = keys[done:done + len(y)] if keys is not None else None
        if writer is not None and all(k in cache for k in batch_keys):
            rows = np.zeros([len(y), cache.dim], np.float32)
            for dest, values in cache.read(batch_keys, list(range(len(y)))):
                rows[dest] = values
        else:
            out = np.asarray(bottom(images), np.float32)
            computed, shape, rows = computed + len(y), out.shape[1:], out.reshape(len(out), -1)
            if writer is not None:
                writer.add(batch_keys, rows)
        if matrix is None:
            matrix = FeatureMatrix(len(batches), rows.shape[1], workdir)
        matrix.put(np.arange(done, done + len(y)), rows)
        labels.append(np.asarray(y, np.int32))
        done += len(y)
    if writer is not None:
        writer.flush()
    log.info("activations at the cut: %d computed, %d from the cache", computed, done - computed)
    return matrix, np.concatenate(labels), shape or _shape_of(bottom, batches)


def _shape_of(bottom, batches) -> tuple[int, ...]:
    """[h, w, c] of the activations, from one image, when every batch came from the cache."""
    images, _ = next(iter(batches()))
    return tuple(np.asarray(bottom(images[:1])).shape[1:])
