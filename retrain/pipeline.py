"""run(config): the recipe. Scan and split, resolve the module, extract features, train the new layer,
export, report; each step lives in its own module and this one only calls them in order."""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from retrain import data, native, runs
from retrain.config import Config
from retrain.errors import RetrainError

log = logging.getLogger(__name__)
WARMUP_IMAGES = 3  # real requests replayed by TF Serving at load: enough to trace every branch once


@dataclasses.dataclass(frozen=True)
class Result:
    version: int                  # the run's number N
    run_dir: Path                 # <output>/runs/N: labels.txt, metrics.json
    saved_model_dir: Path         # <output>/saved_model/N, what TF Serving loads
    labels: list[str]
    train_counts: dict[str, int]  # training images per label (skipped files excluded)
    val_counts: dict[str, int]    # validation images per label
    val_accuracy: float           # in [0, 1], on the held-out split
    epochs: int                   # epochs of the kept weights
    seconds: float                # wall time of the whole run
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)
    tflite: dict | None = None    # with --tflite: kind, both accuracies and the drop in points


def run(config: Config) -> Result:
    """Do what `python -m retrain` does: train a new layer on config.images and export it."""
    start = time.monotonic()
    labels, examples = data.scan(config.images)
    train_set, val_set = data.split(examples, config.validation_split)
    if not val_set:
        raise RetrainError(f"--images: {config.images} has one image per class; expected at least 2 per class "
                           "so that some can be held out for validation")
    log.info("split: %d training, %d validation images", len(train_set), len(val_set))
    version, run_dir = runs.reserve(config.output_dir)
    # TensorFlow loads only now: input errors above print alone, without its start-up time and noise.
    native.import_tensorflow()
    from retrain import export, model, modules, tflite, training

    module = modules.load_info(config.module)
    image_size = modules.image_size_for(module, config.image_size)
    examples = train_set + val_set
    y = np.array([e.label for e in examples], np.int32)
    is_train = np.arange(len(examples)) < len(train_set)
    with tempfile.TemporaryDirectory(prefix=".features-", dir=run_dir) as workdir:  # the matrix is scratch
        source = _features(config, module, image_size, [e.path for e in examples], Path(workdir))
        _check_classes(labels, y[source.kept & is_train], config.images)
        log.info("training the new layer on %d images for up to %d epochs", np.sum(source.kept & is_train),
                 config.epochs)
        trained = training.train_head(
            source, y, np.flatnonzero(source.kept & is_train), np.flatnonzero(source.kept & ~is_train), len(labels),
            dropout=config.dropout, learning_rate=config.learning_rate, batch_size=config.batch_size,
            epochs=config.epochs, patience=config.patience, seed=config.seed)
    train_kept, val_kept = ([e for e, k in zip(examples, source.kept & side) if k] for side in (is_train, ~is_train))
    log.info("exporting the SavedModel (takes seconds)")
    saved = export.export_saved_model(
        model.build_classifier(module.path, image_size, trained.head), labels=labels, image_size=image_size,
        base_dir=config.output_dir / "saved_model", version=version, max_pixels=config.max_pixels,
        warmup_images=[e.path.read_bytes() for e in val_kept[:WARMUP_IMAGES]],
        info={"module_handle": config.module, "module_path": module.path, "module_fingerprint": module.fingerprint,
              "metrics": {"val_accuracy": trained.val_accuracy, "epochs": trained.epoch}})
    lite = tflite.export_checked(
        saved, run_dir, config.tflite, train_paths=[e.path for e in train_kept], val_paths=[e.path for e in val_kept],
        val_labels=[e.label for e in val_kept], image_size=image_size, max_pixels=config.max_pixels,
        max_drop=config.max_export_drop) if config.tflite else None
    result = Result(version, run_dir, saved, labels, _counts(labels, train_kept), _counts(labels, val_kept),
                    trained.val_accuracy, trained.epoch, time.monotonic() - start,
                    [(str(p), why) for p, why in source.skipped], lite)
    runs.write_labels(run_dir, labels)
    runs.write_json(run_dir / "metrics.json", _metrics(result, config.module, image_size))
    return result


def _features(config: Config, module, image_size: int, paths: list[Path], workdir: Path):
    """Feature rows for paths: extracted once through the cache, or (--no-cache) computed every epoch."""
    from retrain import engines, features

    if not config.use_cache:
        runner = engines.open_engine(config.engine, module, image_size, config.batch_size)
        return features.LiveFeatures(paths, runner, features.Decoder(image_size, config.max_pixels), config.batch_size)
    return features.extract(paths, module=module, image_size=image_size, engine=config.engine,
                            cache_dir=config.feature_cache_dir, batch_size=config.batch_size,
                            max_pixels=config.max_pixels, workdir=workdir)


def _check_classes(labels: list[str], y_train: np.ndarray, images: Path) -> None:
    """Every class must keep a training image after skipped files are left out."""
    empty = [label for i, label in enumerate(labels) if not np.any(y_train == i)]
    if empty:
        raise RetrainError(f"--images: class {empty[0]} in {images} has no usable training image after "
                           "skipping files that do not decode; expected at least one")


def _counts(labels: list[str], examples: list[data.Example]) -> dict[str, int]:
    return {name: sum(e.label == i for e in examples) for i, name in enumerate(labels)}


def _metrics(result: Result, module: str, image_size: int) -> dict:
    return {"val_accuracy": result.val_accuracy, "epochs": result.epochs, "seconds": round(result.seconds, 2),
            "train_counts": result.train_counts, "val_counts": result.val_counts, "module": module,
            "image_size": image_size, "skipped": len(result.skipped), "tflite": result.tflite}
