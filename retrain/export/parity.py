"""An exported file against the SavedModel it came from: both answer the judged split's images.

Used by every conversion (TFLite, ONNX): the converted file is only trusted when its answers match.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import stop
from retrain.errors import RetrainError
from retrain.export.assets import IMAGES_SIGNATURE

log = logging.getLogger(__name__)

BATCH = 64  # images per call: bounds memory on large sets


def decoded(paths: list[Path], image_size: int, max_pixels: int) -> Iterator[tuple[np.ndarray, list[int]]]:
    """(float32 [<=BATCH, S, S, 3] in [0, 1], indices into paths) batches, decoded exactly as for training."""
    from retrain.images.decoding import Decoder

    decode, skipped = Decoder(image_size, max_pixels), []
    for start in range(0, len(paths), BATCH):
        images, good = decode(paths[start:start + BATCH], skipped)
        yield images, [start + i for i in good]


def answered(saved_model_dir: Path, paths: list[Path], image_size: int,
             max_pixels: int) -> Iterator[tuple[np.ndarray, np.ndarray, list[int]]]:
    """decoded()'s batches with the SavedModel's serving_images scores for them: (images, scores float32
    [n, K], indices into paths)."""
    loaded = tf.saved_model.load(str(saved_model_dir))  # held: the signature needs its variables alive
    serve = loaded.signatures[IMAGES_SIGNATURE]
    for images, rows in decoded(paths, image_size, max_pixels):
        stop.check()  # a batch is a safe point: up to 1,000 images pass here for a quantised file
        yield images, serve(images=tf.constant(images))["scores"].numpy(), rows


def compare(saved_model_dir: Path, scores: Callable[[np.ndarray], np.ndarray], paths: list[Path],
            labels: list[int], image_size: int, max_pixels: int) -> dict:
    """Answers of `scores` (float32 [N, H, W, 3] in [0, 1] -> [N, K]) and of the SavedModel's
    serving_images signature on the images at paths, whose true label indices are `labels`.

    Returns {"accuracy", "saved_model_accuracy", "drop_points", "images", "changed_answers"}: accuracies
    in [0, 1], the drop in percentage points, and the images whose top label differs between the two.
    """
    hits_saved = hits_other = changed = count = 0
    truths = np.asarray(labels)
    for images, saved_scores, rows in answered(saved_model_dir, paths, image_size, max_pixels):
        truth, count = truths[rows], count + len(rows)
        saved_answer, other_answer = saved_scores.argmax(1), np.asarray(scores(images)).argmax(1)
        hits_saved += int(np.sum(saved_answer == truth))
        hits_other += int(np.sum(other_answer == truth))
        changed += int(np.sum(saved_answer != other_answer))
    saved_acc, other_acc = hits_saved / max(count, 1), hits_other / max(count, 1)
    return {"accuracy": other_acc, "saved_model_accuracy": saved_acc,
            "drop_points": round(100 * (saved_acc - other_acc), 3), "images": count, "changed_answers": changed}


def within_drop(what: str, path: Path, check: dict, accuracy: float, max_drop: float) -> None:
    """Raise RetrainError (exit code 3) when the file at path (`what`: "int8 TFLite model", ...) lost more
    than max_drop accuracy points against the SavedModel in `check` (compare()'s dict; accuracy: the
    file's). The message holds the whole check: the run ends there, before the summary that says it."""
    if check["drop_points"] > max_drop:
        raise RetrainError(f"--max-export-drop: the {what} {path} lost {check['drop_points']:.2f} accuracy points "
                           f"({accuracy:.3f} against {check['saved_model_accuracy']:.3f}; {check['changed_answers']} "
                           f"of {check['images']} answers changed); expected at most {max_drop:g} (file kept for "
                           "inspection)", exit_code=3)


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error, for a one-line message (converters raise pages of log)."""
    text = str(error).strip() or type(error).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), text)[:300]
