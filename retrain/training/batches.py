"""Labelled image batches for phase-2 fine-tuning: from arrays (activations at the cut) or decoded
(and augmented) from files, in the decoding training and serving share."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from retrain.errors import RetrainError
from retrain.images import augment
from retrain.images.decoding import Decoder

log = logging.getLogger(__name__)


class Batches:
    """A labelled set read batch by batch: calling it gives an iterable of (float32 images [B, ...], int
    labels [B]); len() is the most rows one call yields (a file that no longer decodes is left out)."""

    def __init__(self, make: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], size: int) -> None:
        self.make, self.size = make, size

    def __call__(self) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        return self.make()

    def __len__(self) -> int:
        return self.size


def array_batches(images, labels: np.ndarray, batch_size: int, seed: int | None = None,
                  shape: tuple[int, ...] | None = None) -> Batches:
    """Batches over images float32 [N, ...], or over a FeatureMatrix whose rows are read and reshaped to
    `shape` (activations kept on disk); with a seed, a fresh shuffled order on every call."""
    rng = np.random.default_rng(seed)
    read = images.read if hasattr(images, "read") else images.__getitem__

    def batches():
        order = rng.permutation(len(labels)) if seed is not None else np.arange(len(labels))
        for start in range(0, len(order), batch_size):
            rows = np.sort(order[start:start + batch_size])
            x = read(rows)
            yield (x if shape is None else x.reshape(len(rows), *shape)), labels[rows]
    return Batches(batches, len(labels))


def file_batches(paths: list[Path], labels, image_size: int, max_pixels: int, batch_size: int,
                 view: int | None = None, seed: int = 0, settings: augment.AugmentSettings | None = None,
                 strict: bool = False):
    """A callable yielding (float32 [B, S, S, 3] in [0, 1], int32 [B]) in path order, decoded as for
    training and serving (retrain.images.decoding); with `view`, augmented as that view. A file that no longer
    decodes is left out with its label; with strict it is a RetrainError instead (rows stay aligned
    with the caller's per-file cache keys)."""
    decode = Decoder(image_size, max_pixels)
    labels = np.asarray(labels, np.int32)

    def batches():
        for start in range(0, len(paths), batch_size):
            skipped: list[tuple[Path, str]] = []
            images, good = decode(paths[start:start + batch_size], skipped)
            if strict and skipped:
                raise RetrainError(f"--images: {skipped[0][0]} no longer decodes ({skipped[0][1]}); expected the "
                                   "files to stay as they were while the run reads them")
            if view is not None:
                images = augment.augment(images, view, seed, settings or augment.AugmentSettings())
            yield images, labels[start:start + batch_size][good]
    return Batches(batches, len(paths))
