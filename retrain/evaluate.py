"""Accuracy of an exported model on a labelled image folder, through its bytes-in serving signature.

Evaluating through `serving_default` measures exactly what a TF Serving client gets: decoding,
resizing, module and head, all inside the exported graph.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from retrain import data, native
from retrain.errors import RetrainError, skip_line

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    accuracy: float                 # in [0, 1] over the images evaluated
    count: int                      # images evaluated (skipped ones excluded)
    per_class: dict[str, float]     # accuracy of each folder's images
    confusion: list[list[int]]      # [true folder][predicted model label], model label order
    model_labels: list[str]
    skipped: list[tuple[str, str]]  # (path, one-line reason) of files the served graph refused


def evaluate(model: Path, images: Path, batch_size: int = 64) -> Evaluation:
    """Run every image of `images` (one folder per label) through the newest version under `model`.

    Folder names must be labels of the model; raises RetrainError naming the first one that is not.
    A file the served graph refuses is skipped with its reason, as in training.
    """
    folder_labels, examples = data.scan(images)
    native.import_tensorflow()  # after the folder checks, which need no TensorFlow
    from retrain import predict

    version, serve, model_labels = predict.load(Path(model))
    unknown = [name for name in folder_labels if name not in model_labels]
    if unknown:
        raise RetrainError(f"--images: folder {unknown[0]} is not a label of {version}; "
                           f"expected one of {', '.join(model_labels)}")
    log.info("evaluating on %d images", len(examples))
    outcomes = predict.score_files(serve, [e.path for e in examples], batch_size)
    skipped = [(str(e.path), o) for e, o in zip(examples, outcomes) if isinstance(o, str)]
    for path, why in skipped:
        log.warning(skip_line(path, why))
    scored = [(e, o) for e, o in zip(examples, outcomes) if not isinstance(o, str)]
    truth = np.array([model_labels.index(folder_labels[e.label]) for e, _ in scored], np.int64)
    predicted = np.array([int(np.argmax(o)) for _, o in scored], np.int64)
    confusion = np.zeros((len(model_labels), len(model_labels)), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {model_labels[k]: float(np.mean(predicted[truth == k] == k)) for k in sorted(set(truth.tolist()))}
    return Evaluation(accuracy=float(np.mean(predicted == truth)) if len(truth) else 0.0, count=len(truth),
                      per_class=per_class, confusion=confusion.tolist(), model_labels=model_labels, skipped=skipped)
