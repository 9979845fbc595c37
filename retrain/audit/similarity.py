"""Near-copies across splits and images far from every class, by cosine similarity of feature rows.

Cosine is taken on the raw feature vectors of the module (unit-normalised). With the bundled module, on
Fashion-MNIST enlarged to 256 pixels, JPEG-q75, resized and 4-pixel-cropped copies sat at 0.97-1.00,
brightened ones mostly above 0.94, and the nearest genuinely different test image at or below 0.96; the
default threshold (0.95) was measured by bench/near_duplicates.py (docs/benchmarks.md).
"""
from __future__ import annotations

import numpy as np

from retrain import stop

BLOCK = 2048       # query rows per matrix product: bounds memory at BLOCK x len(reference) floats
OUTLIER_MADS = 4.0  # distance to the nearest class centre beyond median + this many (scaled) MADs of that class


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest(queries: np.ndarray, reference: np.ndarray, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """(index into reference, cosine) of each query row's most similar reference row, both [len(queries)].

    exclude(query rows, reference) -> bool mask [q, r] of pairs not to count (e.g. byte-identical files);
    a query with nothing to compare gets index -1 and cosine -1.
    """
    q, r = unit(queries), unit(reference)
    best = np.full(len(q), -1, np.int64)
    cosine = np.full(len(q), -1.0, np.float32)
    if not len(q) or not len(r):
        return best, cosine
    for start in range(0, len(q), BLOCK):
        stop.check()
        sims = q[start:start + BLOCK] @ r.T
        if exclude is not None:
            sims[exclude(np.arange(start, min(start + BLOCK, len(q))))] = -2.0
        best[start:start + BLOCK] = sims.argmax(axis=1)
        cosine[start:start + BLOCK] = sims.max(axis=1)
    best[cosine < -1.5] = -1
    return best, np.maximum(cosine, -1.0)


def outliers(features: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    """float32 [N]: the smallest, over classes, of (cosine distance to the class centre) / (that class's
    robust radius: median + OUTLIER_MADS scaled MADs of its members' distances). Above 1: far from every class."""
    x = unit(features)
    ratios = np.full((len(x), classes), np.inf, np.float32)
    for c in range(classes):
        members = x[y == c]
        if len(members) < 3:
            continue
        centre = unit(members.mean(axis=0, keepdims=True))[0]
        own = 1.0 - members @ centre
        mad = 1.4826 * np.median(np.abs(own - np.median(own)))
        radius = max(float(np.median(own) + OUTLIER_MADS * mad), 1e-6)
        ratios[:, c] = (1.0 - x @ centre) / radius
    best = ratios.min(axis=1)
    return np.where(np.isfinite(best), best, 0.0).astype(np.float32)
