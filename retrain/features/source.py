"""FeatureSource: what the new layer trains on, whichever way its rows were made.

Three kinds exist: extraction.Extraction (rows extracted once through the cache), extraction.LiveFeatures
(--no-cache: the backbone runs on every read) and views.WithViews (originals and augmented views).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np


class FeatureSource(Protocol):
    """Feature rows float32 [N, D], read chunk by chunk so that no set needs to fit in memory."""

    dim: int      # D, the feature width
    stable: bool  # True: a row reads the same every time, so a trainer may keep what it read

    def chunks(self, rows: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (rows read, float32 [n <= size, D]) covering `rows` (int [R]); rows without features
        (files that did not decode) are left out of what is yielded."""
        ...
