"""Fit the new head; run() wires the stages: scan and split, resolve the module, extract, fit, export."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from retrain import data
from retrain.config import Config
from retrain.errors import RetrainError

log = logging.getLogger(__name__)
DEFAULT_IMAGE_SIZE = 224


@dataclasses.dataclass(frozen=True)
class Result:
    version: int                  # the run's number N
    run_dir: Path                 # <output>/runs/N: labels.txt, metrics.json
    saved_model_dir: Path         # <output>/saved_model/N, what TF Serving loads
    labels: list[str]
    train_counts: dict[str, int]  # training images per label
    val_counts: dict[str, int]    # validation images per label
    val_accuracy: float           # in [0, 1], on the held-out split
    epochs: int                   # epochs of the kept weights
    seconds: float                # wall time of the whole run
    tflite: dict | None = None    # with --tflite: kind, both accuracies and the drop in points


def reserve_run(output: Path) -> tuple[int, Path]:
    """Create <output>/runs/N for the next free N (one more than any earlier run) and return (N, that folder).

    mkdir is atomic, so two runs started at once never share a number; checked before any training.
    """
    try:
        for sub in ("runs", "saved_model"):
            (output / sub).mkdir(parents=True, exist_ok=True)
        taken = [int(p.name) for sub in ("runs", "saved_model") for p in (output / sub).iterdir()
                 if p.name.isdigit()]
        version = max(taken, default=0) + 1
        while True:
            try:
                (output / "runs" / str(version)).mkdir()
                break
            except FileExistsError:
                version += 1
        run_dir = output / "runs" / str(version)
        (run_dir / ".write-check").write_text("ok")
        (run_dir / ".write-check").unlink()
    except OSError as e:
        raise RetrainError(f"--output: cannot write to {output} ({e.strerror or e}); expected a writable folder")
    return version, run_dir


def image_size_for(module_size: int | None, requested: int | None, handle: str) -> int:
    """The module's fixed size wins; --image-size applies to modules that take any size (default 224)."""
    if module_size is None:
        return requested or DEFAULT_IMAGE_SIZE
    if requested is not None and requested != module_size:
        raise RetrainError(f"--image-size: found {requested}, but module {handle} expects "
                           f"{module_size}x{module_size} images")
    return module_size


def _counts(labels: list[str], examples: list[data.Example]) -> dict[str, int]:
    return {name: sum(e.label == i for e in examples) for i, name in enumerate(labels)}


def run(config: Config) -> Result:
    """Do what `python -m retrain` does: train a new head on config.images and export it."""
    start = time.monotonic()
    if config.images is None:
        raise RetrainError("--images: missing; expected a folder with one sub-folder per class")
    labels, examples = data.scan(config.images)
    train_set, val_set = data.split(examples, config.validation_split)
    log.info("split: %d training, %d validation images", len(train_set), len(val_set))
    if not val_set:
        raise RetrainError(f"--images: {config.images} has one image per class; expected at least 2 per class "
                           "so that some can be held out for validation")
    version, run_dir = reserve_run(config.output_dir)
    (run_dir / "labels.txt").write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    # TensorFlow is imported only now: input errors above print alone, without its start-up noise.
    from retrain import fit
    outcome = fit.train_and_export(config, labels, train_set, val_set, version, run_dir)
    result = Result(version=version, run_dir=run_dir, saved_model_dir=outcome.saved_model_dir, labels=labels,
                    train_counts=_counts(labels, train_set), val_counts=_counts(labels, val_set),
                    val_accuracy=outcome.val_accuracy, epochs=outcome.epochs,
                    seconds=time.monotonic() - start, tflite=outcome.tflite)
    metrics = {"val_accuracy": result.val_accuracy, "epochs": result.epochs, "seconds": round(result.seconds, 2),
               "train_counts": result.train_counts, "val_counts": result.val_counts,
               "module": config.module, "image_size": outcome.image_size, "tflite": outcome.tflite}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.info("done in %.1f s: validation accuracy %.3f, model in %s", result.seconds, result.val_accuracy,
             result.saved_model_dir)
    return result
