"""Classify image files with an exported SavedModel through its serving_default signature.

The files go through the very graph TF Serving runs (decode, checks, resize, model), so a local
prediction and a served one agree.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.errors import RetrainError
from retrain.export import BYTES_INPUT, BYTES_SIGNATURE

log = logging.getLogger(__name__)

_BATCH = 32  # images per call; a batch holding a bad file is retried one image at a time


def _versions(base: Path) -> list[Path]:
    """Numeric sub-folders holding a saved_model.pb, as TF Serving would consider them."""
    if not base.is_dir():
        return []
    return [p for p in base.iterdir()
            if p.is_dir() and re.fullmatch(r"[0-9]+", p.name) and (p / "saved_model.pb").is_file()]


def find_version(model: Path) -> Path:
    """The SavedModel folder for `model`: a run's output folder or its saved_model/ (the highest
    numeric version, as TF Serving serves it), or a saved_model/N/ folder itself."""
    model = Path(model)
    if (model / "saved_model.pb").is_file():
        return model
    versions = _versions(model / "saved_model") or _versions(model)
    if not versions:
        raise RetrainError(f"--model: found no SavedModel in {model}, "
                           "expected a run folder, its saved_model/ folder or a saved_model/N/ version")
    return max(versions, key=lambda p: int(p.name))


_NOISE = re.compile(r"Graph execution error:|Detected at node|<stack traces unavailable>|\s*\[\[")


def _one_line(error: tf.errors.OpError) -> str:
    """The op's own message, without TF's graph-execution preamble and node decorations."""
    lines = [line for line in error.message.splitlines() if line.strip() and not _NOISE.match(line)]
    line = re.sub(r"\{\{[^}]*\}\}|\[Op:[^]]*\]", "", lines[0] if lines else type(error).__name__).strip()
    match = re.fullmatch(r"assertion failed: \[(.*)\]", line)
    return (match.group(1) if match else line)[:300]


def _ranked(scores: np.ndarray, labels: np.ndarray, top_k: int) -> list[dict]:
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [{"label": labels[i].decode("utf-8"), "score": float(scores[i])} for i in order]


def _classify(serve, files: list[bytes], top_k: int) -> list[dict]:
    """One result per file: {"predictions": [...]} or {"error": "..."}; a bad file spoils no other."""
    try:
        outputs = serve(**{BYTES_INPUT: tf.constant(files)})
    except tf.errors.InvalidArgumentError as error:
        if len(files) == 1:
            return [{"error": _one_line(error)}]
        return [result for one in files for result in _classify(serve, [one], top_k)]
    scores, classes = outputs["scores"].numpy(), outputs["classes"].numpy()
    return [{"predictions": _ranked(scores[i], classes[i], top_k)} for i in range(len(files))]


def predict(model: Path, images: list[Path], top_k: int = 5) -> list[dict]:
    """Top-k labels per image, in the order given.

    Each result is {"path": str, "predictions": [{"label": str, "score": float}, ...]} with scores
    (softmax probabilities in [0, 1]) descending, or {"path": str, "error": one line} for a file
    that cannot be read or is refused by the graph (not an image, animated WebP, too many pixels).
    """
    if top_k < 1:
        raise RetrainError(f"--top-k: found {top_k}, expected at least 1")
    version = find_version(model)
    log.info("Loading %s", version)
    loaded = tf.saved_model.load(str(version))
    if BYTES_SIGNATURE not in loaded.signatures:
        raise RetrainError(f"{version}: found signatures {sorted(loaded.signatures)}, expected {BYTES_SIGNATURE}")
    serve = loaded.signatures[BYTES_SIGNATURE]
    results: list[dict] = [{"path": str(path)} for path in images]
    readable = []
    for result, path in zip(results, images):
        try:
            readable.append((result, Path(path).read_bytes()))
        except OSError as error:
            result["error"] = f"cannot read the file: {error.strerror or error}"
    for start in range(0, len(readable), _BATCH):
        chunk = readable[start:start + _BATCH]
        for (result, _), outcome in zip(chunk, _classify(serve, [data for _, data in chunk], top_k)):
            result.update(outcome)
    log.info("Classified %d of %d images", sum("predictions" in r for r in results), len(results))
    return results
