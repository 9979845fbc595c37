"""Likely label errors: how unlikely each image's given label is to heads that never saw the image.

Every image gets out-of-fold probabilities from softmax regressions trained on the cached features of
the other folds (NumPy, full batch, seconds for thousands of images). Folds go by content digest, so
byte-identical copies share a fold and cannot vouch for each other's label. A second round trains
again without the images the first round found least likely (a mislabelled image pulls its head
towards its wrong label), which ranks the flipped labels of docs/benchmarks.md better than one round.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np

from retrain import stop

log = logging.getLogger(__name__)
FOLDS = 5          # out-of-fold heads per round
STEPS = 200        # full-batch Adam steps per head: converged on 5,000 x 1280 features (docs/benchmarks.md)
L2 = 1e-3          # weight decay per sample: keeps a head from memorising its own noisy labels
PRUNE = 0.1        # share of the least likely images left out of the second round's training folds


@dataclasses.dataclass(frozen=True)
class LabelCheck:
    """Out-of-fold view of every image: probs float32 [N, K]; score = 1 - p(given label), higher is worse."""
    probs: np.ndarray
    score: np.ndarray
    suggested: np.ndarray  # int [N]: the most likely label


def fold_of(digests: list[str], folds: int) -> np.ndarray:
    """int [N] in [0, folds): from each file's content digest, so copies share a fold and reruns agree."""
    return np.array([int(hashlib.sha256(d.encode()).hexdigest()[:8], 16) % folds for d in digests], np.int64)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    return x / (x.std(axis=0) + 1e-6)


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, steps: int = STEPS, l2: float = L2,
                rate: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, full-batch Adam: x float32 [N, D], y int [N] -> (W [D, K], b [K])."""
    n, dim = x.shape
    w, b = np.zeros((dim, classes), np.float32), np.zeros(classes, np.float32)
    onehot = np.eye(classes, dtype=np.float32)[y]
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    for t in range(1, steps + 1):
        p = softmax(x @ w + b)
        grad = (p - onehot) / n
        gw, gb = x.T @ grad + l2 * w, grad.sum(axis=0)
        for i, (param, g) in enumerate(((w, gw), (b, gb))):
            m, v = moments[2 * i], moments[2 * i + 1]
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            param -= rate * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return w, b


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _out_of_fold(x: np.ndarray, y: np.ndarray, classes: int, fold: np.ndarray, train_mask: np.ndarray,
                 folds: int) -> np.ndarray:
    probs = np.zeros((len(x), classes), np.float32)
    for k in range(folds):
        stop.check()
        held = fold == k
        fit = ~held & train_mask
        if not held.any() or len(np.unique(y[fit])) < 2:
            probs[held] = 1.0 / classes
            continue
        w, b = fit_softmax(x[fit], y[fit], classes)
        probs[held] = softmax(x[held] @ w + b)
    return probs


def check_labels(features: np.ndarray, y: np.ndarray, classes: int, digests: list[str], folds: int = FOLDS,
                 rounds: int = 2) -> LabelCheck:
    """Out-of-fold label check of features float32 [N, D] with given labels y int [N] in [0, classes).

    Round one trains on every other fold; round two leaves out the PRUNE share the first found least
    likely. Needs at least two folds' worth of images; with fewer than 2 * folds images it returns
    uniform probabilities (nothing can be judged).
    """
    n = len(y)
    if n < 2 * folds:
        uniform = np.full((n, classes), 1.0 / classes, np.float32)
        return LabelCheck(uniform, np.full(n, 1 - 1.0 / classes, np.float32), np.zeros(n, np.int64))
    x = _standardise(np.asarray(features, np.float32))
    fold = fold_of(digests, folds)
    keep = np.ones(n, bool)
    for _ in range(rounds):
        probs = _out_of_fold(x, y, classes, fold, keep, folds)
        given = probs[np.arange(n), y]
        keep = given > np.quantile(given, PRUNE)
    return LabelCheck(probs, (1.0 - given).astype(np.float32), probs.argmax(axis=1))
