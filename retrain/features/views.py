"""Augmented views of the training images as feature rows, cached like plain features, and the feature
source that reads originals and views as one.

A view is an extra feature-cache namespace: the module's namespace fields with the fingerprint
extended by the augmentation settings key and the view index, so view v of an image is computed once
per (image bytes, module, size, settings, seed, v) and found again in later runs, like plain features.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from retrain.features.extraction import Extractor, extract
from retrain.features.matrix import FeatureMatrix
from retrain.features.source import FeatureSource
from retrain.images import augment

log = logging.getLogger(__name__)


def view_fingerprint(fingerprint: str, settings: augment.AugmentSettings, seed: int, view: int) -> str:
    """The fingerprint field of view `view`'s cache namespace (the module's, then what made the pixels)."""
    return f"{fingerprint}+augment-{augment.settings_key(settings)}-seed{seed}-view{view}"


def view_features(extractor: Extractor, paths: list[Path], *, view: int, seed: int,
                  settings: augment.AugmentSettings, digests: list[str] | None = None) -> FeatureMatrix:
    """A FeatureMatrix float32 [len(paths), D]: the module's features of view `view` of each file,
    through the extractor's cache; file-backed under its workdir when large. digests: the files'
    SHA-256 when known, so the files are not read once more per view just to hash them.

    extraction.extract does it, with the pixels augmented after decoding and the view named in the cache
    namespace; files are keyed by the SHA-256 of their bytes, so only missing views are computed.
    """
    found = extract(extractor, paths, variant=view_fingerprint("", settings, seed, view),
                    transform=lambda images: augment.augment(images, view, seed, settings), digests=digests,
                    name=f"augmented view {view + 1}")
    return found.matrix


class WithViews:
    """A FeatureSource whose rows past the original N are augmented views of training rows: row
    N + v * count + i is view v of the i-th training row.

    Reads like the source it wraps (chunks of (rows, float32 [n, D])); each view is a FeatureMatrix,
    file-backed when large, so views cost disk, not memory, on big sets.
    """

    stable = True

    def __init__(self, source: FeatureSource, views: list[FeatureMatrix]) -> None:
        self.source, self.views, self.n = source, views, len(source.kept)
        self.count, self.dim = len(views[0]), source.dim

    def chunks(self, rows: np.ndarray, size: int):
        """Chunks of `rows` in their order, originals and views mixed as they come (a trainer's shuffle)."""
        rows = np.asarray(rows, np.int64)
        for start in range(0, len(rows), size):
            part = rows[start:start + size]
            originals = [(read, x) for read, x in self.source.chunks(part[part < self.n], size)]
            extra = part[part >= self.n]
            which, index = np.divmod(extra - self.n, self.count)
            viewed = np.empty((len(extra), self.dim), np.float32)
            for v in np.unique(which):
                viewed[which == v] = self.views[v].read(index[which == v])
            yield (np.concatenate([read for read, _ in originals] + [extra]),
                   np.concatenate([x for _, x in originals] + [viewed]))


def add_views(extractor: Extractor, source, y: np.ndarray, train_rows: np.ndarray, paths: list[Path], *,
              views: int, seed: int, settings: augment.AugmentSettings | None = None):
    """(source with `views` views of each training row appended, labels for every row, int [n, 1 + V]
    training rows: each image's row, then its views'). Each view is computed once and cached like plain
    features; the extractor's workdir holds large view matrices for as long as the source is read.
    source: an extraction.Extraction (its digests key the views). settings: the defaults when None."""
    settings = settings or augment.AugmentSettings()
    train_paths = [paths[i] for i in train_rows]
    extra = [view_features(extractor, train_paths, view=v, seed=seed, settings=settings,
                           digests=[source.digests[i] for i in train_rows])
             for v in range(views)]
    n, count = len(y), len(train_rows)
    rows = np.column_stack([train_rows] + [n + v * count + np.arange(count) for v in range(len(extra))])
    return WithViews(source, extra), np.concatenate([y, np.tile(y[train_rows], len(extra))]), rows
