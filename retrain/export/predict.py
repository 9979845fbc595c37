"""Classify image files with an exported SavedModel through its serving_default signature.

The files go through the very graph TF Serving runs (decode, checks, resize, model), so a local
prediction and a served one agree.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import fs
from retrain.errors import RetrainError, reason
from retrain.export.assets import BYTES_INPUT, BYTES_SIGNATURE

log = logging.getLogger(__name__)

BATCH = 32  # images per call; a batch holding a bad file is retried one image at a time


def find_version(model: Path) -> Path:
    """The SavedModel folder for `model`: a run's output folder or its saved_model/ (the highest
    numeric version, as TF Serving serves it), or a saved_model/N/ folder itself."""
    model = Path(model)
    if (model / "saved_model.pb").is_file():
        return model
    for base in (model / "saved_model", model):
        versions = {n: p for n, p in fs.numbered(base).items() if (p / "saved_model.pb").is_file()}
        if versions:
            return versions[max(versions)]
    raise RetrainError(f"--model: found no SavedModel in {model}, "
                       "expected a run folder, its saved_model/ folder or a saved_model/N/ version")


def load(model: Path):
    """(version folder, its serving_default function, its labels) for a run folder or version."""
    version = find_version(model)
    log.info("loading %s", version)
    loaded = tf.saved_model.load(str(version))
    if BYTES_SIGNATURE not in loaded.signatures:
        raise RetrainError(f"{version}: found signatures {sorted(loaded.signatures)}, expected {BYTES_SIGNATURE}")
    labels = (version / "assets.extra" / "labels.txt").read_text("utf-8").splitlines()
    return version, loaded.signatures[BYTES_SIGNATURE], labels


def _score(serve, blobs: list[bytes]) -> list:
    """Per blob: float32 scores [K], or the one-line reason the served graph refused it."""
    try:
        return list(serve(**{BYTES_INPUT: tf.constant(blobs, tf.string)})["scores"].numpy())
    except tf.errors.InvalidArgumentError as error:
        if len(blobs) == 1:
            return [reason(error)]
        return [result for blob in blobs for result in _score(serve, [blob])]


def score_files(serve, paths: list[Path], batch: int = BATCH) -> list:
    """Per file, in order: float32 scores [K] from serve, or a one-line reason (unreadable, refused)."""
    results: list = [None] * len(paths)
    readable = []
    for i, path in enumerate(paths):
        try:
            readable.append((i, Path(path).read_bytes()))
        except OSError as error:
            results[i] = f"cannot read the file ({error.strerror or error})"
    for start in range(0, len(readable), batch):
        chunk = readable[start:start + batch]
        for (i, _), outcome in zip(chunk, _score(serve, [blob for _, blob in chunk])):
            results[i] = outcome
    return results


def predict(model: Path, images: list[Path], top_k: int = 5) -> list[dict]:
    """Top-k labels per image, in the order given.

    Each result is {"path": str, "predictions": [{"label": str, "score": float}, ...]} with scores
    (softmax probabilities in [0, 1]) descending, or {"path": str, "error": one line} for a file
    that cannot be read or is refused by the graph (not an image, animated WebP, too many pixels).
    """
    if top_k < 1:
        raise RetrainError(f"--top-k: found {top_k}, expected at least 1")
    _, serve, labels = load(model)
    results = []
    for path, outcome in zip(images, score_files(serve, list(images))):
        if isinstance(outcome, str):
            results.append({"path": str(path), "error": outcome})
            continue
        order = np.argsort(-outcome, kind="stable")[:top_k]
        results.append({"path": str(path), "predictions": [{"label": labels[i], "score": float(outcome[i])}
                                                           for i in order]})
    log.info("classified %d of %d images", sum("predictions" in r for r in results), len(results))
    return results
