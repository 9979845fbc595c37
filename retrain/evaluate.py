"""Accuracy of an exported model on a labelled image folder, through its bytes-in serving signature.

Evaluating through `serving_default` measures exactly what a TF Serving client gets: decoding,
resizing, module and head, all inside the exported graph.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from retrain import data
from retrain.errors import RetrainError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    accuracy: float                 # in [0, 1] over all images
    count: int                      # images evaluated
    per_class: dict[str, float]     # accuracy of each folder's images
    confusion: list[list[int]]      # [true folder][predicted model label], model label order
    model_labels: list[str]


def evaluate(model: Path, images: Path, batch_size: int = 64) -> Evaluation:
    """Run every image of `images` (one folder per label) through the newest version under `model`.

    Folder names must be labels of the model; raises RetrainError naming the first one that is not.
    """
    import tensorflow as tf
    from retrain.export import BYTES_INPUT, BYTES_SIGNATURE
    from retrain.predict import find_version

    version = find_version(Path(model))
    folder_labels, examples = data.scan(images)
    serve = tf.saved_model.load(str(version)).signatures[BYTES_SIGNATURE]
    model_labels = [line for line in (version / "assets.extra" / "labels.txt").read_text("utf-8").splitlines()]
    unknown = [name for name in folder_labels if name not in model_labels]
    if unknown:
        raise RetrainError(f"--images: folder {unknown[0]} is not a label of {version}; "
                           f"expected one of {', '.join(model_labels)}")
    truth = np.array([model_labels.index(folder_labels[e.label]) for e in examples])
    predicted = np.empty(len(examples), np.int64)
    log.info("evaluating %s on %d images", version, len(examples))
    for start in range(0, len(examples), batch_size):
        batch = [e.path.read_bytes() for e in examples[start:start + batch_size]]
        scores = serve(**{BYTES_INPUT: tf.constant(batch)})["scores"].numpy()
        predicted[start:start + len(batch)] = scores.argmax(axis=1)
    confusion = np.zeros((len(model_labels), len(model_labels)), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {model_labels[k]: float(np.mean(predicted[truth == k] == k))
                 for k in sorted(set(truth.tolist()))}
    return Evaluation(accuracy=float(np.mean(predicted == truth)), count=len(examples), per_class=per_class,
                      confusion=confusion.tolist(), model_labels=model_labels)
