"""Labelled image batches (from arrays, or decoded and augmented from files), and the cached features of a view.

A view is an extra feature-cache namespace: the module's namespace fields with the fingerprint
extended by the augmentation settings key and the view index, so view v of an image is computed once
per (image bytes, module, size, settings, seed, v) and found again in later runs, like plain features.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from retrain.errors import RetrainError
from retrain.features.extraction import extract
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


def view_fingerprint(fingerprint: str, settings: augment.AugmentSettings, seed: int, view: int) -> str:
    """The fingerprint field of view `view`'s cache namespace (the module's, then what made the pixels)."""
    return f"{fingerprint}+augment-{augment.settings_key(settings)}-seed{seed}-view{view}"


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


def view_features(paths: list[Path], *, module, image_size: int, engine: str, cache_dir: Path, batch_size: int,
                  max_pixels: int, view: int, seed: int, settings: augment.AugmentSettings, workdir: Path,
                  digests: list[str] | None = None):
    """A FeatureMatrix float32 [len(paths), D]: the module's features of view `view` of each file,
    through the cache; file-backed under workdir when large (the caller owns the folder). digests:
    the files' SHA-256 when known, so the files are not read once more per view just to hash them.

    features.extract does it, with the pixels augmented after decoding and the view named in the cache
    namespace; files are keyed by the SHA-256 of their bytes, so only missing views are computed.
    """
    found = extract(paths, module=module, image_size=image_size, engine=engine, cache_dir=cache_dir,
                    batch_size=batch_size, max_pixels=max_pixels, workdir=Path(workdir),
                    variant=view_fingerprint("", settings, seed, view),
                    transform=lambda images: augment.augment(images, view, seed, settings), digests=digests,
                    name=f"augmented view {view + 1}")
    return found.matrix
