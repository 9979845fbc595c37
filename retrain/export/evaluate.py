"""An exported model judged on a labelled image folder, through its bytes-in serving signature, with the
same reports a run writes.

Evaluating through `serving_default` measures exactly what a TF Serving client gets: decoding,
resizing, module and head, all inside the exported graph.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from retrain import native
from retrain.errors import RetrainError, skip_line
from retrain.inputs import scan
from retrain.inputs.skipped import categorized
from retrain.reports import writers

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    accuracy: float                 # in [0, 1] over the images evaluated
    count: int                      # images evaluated (skipped ones excluded)
    per_class: dict[str, float]     # accuracy (recall) of each folder's images
    confusion: list[list[int]]      # [true label][predicted label], model label order
    model_labels: list[str]
    skipped: list[tuple[str, str]]  # (path, one-line reason) of files the served graph refused
    output: str                     # the folder holding metrics.json and report.html


def default_output(version: Path, images: Path) -> Path:
    """runs/N/eval-<images folder name> for <output>/saved_model/N or runs/N/saved_model; else beside the model."""
    name = f"eval-{Path(images).resolve().name}"
    if version.parent.name == "saved_model" and version.name.isdigit():
        return version.parent.parent / "runs" / version.name / name
    return version.parent / name


def evaluate(model: Path, images: Path, batch_size: int = 64, output: Path | None = None,
             max_pixels: int = 50_000_000) -> Evaluation:
    """Run every image of `images` (one folder per label) through the newest version under `model`, and
    write metrics.json (the result under "test"), the confusion matrix, misclassified.csv and report.html
    into `output` (default: default_output).

    Folder names must be labels of the model; raises RetrainError naming every one that is not.
    A file the served graph refuses is skipped with its reason, as in training.
    """
    found = scan.scan(images, max_pixels)
    folder_labels, examples = found.labels, found.examples
    native.import_tensorflow()  # after the folder checks, which need no TensorFlow
    from retrain.export import predict

    version, serve, labels = predict.load(Path(model))
    unknown = [name for name in folder_labels if name not in labels]
    if unknown:
        raise RetrainError(f"--images: folders {', '.join(unknown)} are not labels of {version}; "
                           f"expected some of {', '.join(labels)}")
    log.info("evaluating on %d images", len(examples))
    outcomes = predict.score_files(serve, [e.path for e in examples], batch_size)
    skipped = [(str(Path(images) / e.rel), categorized(o)) for e, o in zip(examples, outcomes) if isinstance(o, str)]
    for path, why in skipped:
        log.warning(skip_line(path, why))
    skipped = [(str(Path(images) / rel), why) for rel, why in found.skipped] + skipped
    scored = [(e, o) for e, o in zip(examples, outcomes) if not isinstance(o, str)]
    truth = np.array([labels.index(folder_labels[e.label]) for e, _ in scored], np.int64)
    scores = np.array([o for _, o in scored], np.float32).reshape(len(scored), len(labels))
    out = Path(output) if output is not None else default_output(version, images)
    out.mkdir(parents=True, exist_ok=True)
    summaries = writers.write_report_files(
        out, labels=labels, splits={"test": writers.Scored(truth, scores, [e.rel for e, _ in scored])}, judged="test",
        images_root=Path(images), facts={"model": str(version), "images": str(images), "skipped files": len(skipped)},
        title=f"retrain evaluate · {Path(images).resolve().name}")
    test = summaries["test"]
    writers.write_json(out / "metrics.json", {"test": test, "model": str(version), "images": str(images),
                                              "skipped": len(skipped)})
    per_class = {labels[k]: float(np.mean(scores[truth == k].argmax(1) == k)) for k in sorted(set(truth.tolist()))}
    return Evaluation(accuracy=test["accuracy"], count=len(truth), per_class=per_class, confusion=test["confusion"],
                      model_labels=labels, skipped=skipped, output=str(out))
