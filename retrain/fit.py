"""Fit the head on cached features (or, with --no-cache, on images every epoch) and export the result.

Imported only after the input has been checked, because importing TensorFlow is slow and noisy.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import data, export, extract, head_training, model, modules, preprocess
from retrain.config import Config
from retrain.train import image_size_for

log = logging.getLogger(__name__)
WARMUP_IMAGES = 3  # real requests replayed by TF Serving at load: enough to trace every branch once


@dataclasses.dataclass(frozen=True)
class Outcome:
    saved_model_dir: Path
    val_accuracy: float
    epochs: int
    image_size: int
    tflite: dict | None = None  # the TFLite check's report when --tflite was given


def image_batches(examples: list[data.Example], image_size: int, max_pixels: int, batch_size: int,
                  seed: int | None) -> tf.data.Dataset:
    """Batches of (float32 [B, S, S, 3] in [0, 1], int32 [B]) decoded from the files, for --no-cache."""
    paths = [str(e.path) for e in examples]
    ds = tf.data.Dataset.from_tensor_slices((paths, [e.label for e in examples]))
    if seed is not None:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    decode = lambda p, y: (preprocess.decode_resize(tf.io.read_file(p), image_size, max_pixels), y)  # noqa: E731
    return ds.map(decode).batch(batch_size).prefetch(1)


def _fit_head(config, labels, train_set, val_set, info, image_size, workdir):
    """Extract (or reuse) features, train the head on them; returns (head, epochs, val accuracy).

    Early stopping on validation loss keeps the weights of the best epoch.
    """
    everything = train_set + val_set
    feats = extract.extract_features(
        [e.path for e in everything], module=info, image_size=image_size, engine=config.engine,
        cache_dir=config.feature_cache_dir, batch_size=config.batch_size, max_pixels=config.max_pixels,
        workdir=workdir)
    y = np.array([e.label for e in everything], np.int32)
    n = len(train_set)
    return head_training.fit(feats, y, n, len(labels), config)


def _fit_on_images(config, labels, train_set, val_set, info, image_size):
    """The old way: every image through the backbone in every epoch; returns (classifier, epochs, accuracy)."""
    head = model.build_head(info.feature_dim or _probe_dim(info.path, image_size), len(labels), config.dropout)
    classifier = model.build_classifier(info.path, image_size, head)
    model.compile_for_training(classifier, config.learning_rate)
    val = image_batches(val_set, image_size, config.max_pixels, config.batch_size, None)
    log.info("training with the backbone in the loop on %d images for up to %d epochs (--no-cache)",
             len(train_set), config.epochs)
    history = classifier.fit(image_batches(train_set, image_size, config.max_pixels, config.batch_size, config.seed),
                             validation_data=val, epochs=config.epochs, verbose=0,
                             callbacks=[model.early_stopping(config.patience), model.EpochLog(config.epochs)])
    best = int(np.argmin(history.history["val_loss"]))
    _, accuracy = classifier.evaluate(val, verbose=0)
    return classifier, best + 1, float(accuracy)


def _probe_dim(module_path: str, image_size: int) -> int:
    """Feature size of a module that does not declare it: one call on a blank image."""
    loaded = tf.saved_model.load(module_path)
    return int(loaded(tf.zeros([1, image_size, image_size, 3])).shape[-1])


def train_and_export(config: Config, labels: list[str], train_set: list[data.Example],
                     val_set: list[data.Example], version: int, run_dir: Path) -> Outcome:
    """Resolve the module, fit, and publish <output>/saved_model/<version>."""
    info = modules.load_info(config.module)
    image_size = image_size_for(info.image_size, config.image_size, config.module)
    log.info("images resized to %dx%d", image_size, image_size)
    model.set_seed(config.seed)
    if config.use_cache:
        # The gathered feature matrix is scratch: it goes once the head is trained.
        with tempfile.TemporaryDirectory(prefix=".features-", dir=run_dir) as workdir:
            head, epochs, accuracy = _fit_head(config, labels, train_set, val_set, info, image_size, Path(workdir))
        classifier = model.build_classifier(info.path, image_size, head)
    else:
        classifier, epochs, accuracy = _fit_on_images(config, labels, train_set, val_set, info, image_size)
    log.info("exporting the SavedModel (module + new layer + preprocessing)")
    saved = export.export_saved_model(
        classifier, labels=labels, image_size=image_size, base_dir=config.output_dir / "saved_model",
        version=version, max_pixels=config.max_pixels,
        warmup_images=[e.path.read_bytes() for e in val_set[:WARMUP_IMAGES]],
        info={"module_handle": config.module, "module_path": info.path, "module_fingerprint": info.fingerprint,
              "metrics": {"val_accuracy": accuracy, "epochs": epochs}})
    log.info("SavedModel written to %s", saved)
    lite = _tflite(config, saved, run_dir, train_set, val_set, image_size) if config.tflite else None
    return Outcome(saved_model_dir=saved, val_accuracy=accuracy, epochs=epochs, image_size=image_size, tflite=lite)


def _tflite(config, saved: Path, run_dir: Path, train_set, val_set, image_size: int) -> dict:
    """runs/N/model.tflite with export_info.json beside it; fails the run (exit 3) past --max-export-drop."""
    from retrain import tflite

    info = {"model": "model.tflite", "signature": "serving_images", "kind": config.tflite,
            "input": {"name": "images", "shape": [-1, image_size, image_size, 3], "dtype": "float32",
                      "normalisation": "RGB in [0, 1]: pixel / 255 (uint16: / 65535), gray copied to RGB, "
                                       "alpha composited on white, bilinear resize"},
            "output": {"name": "scores", "dtype": "float32", "labels": "labels.txt, same order"}}
    info_path = run_dir / "export_info.json"
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    report = tflite.export_checked(
        saved, run_dir / "model.tflite", config.tflite, train_paths=[e.path for e in train_set],
        val_paths=[e.path for e in val_set], val_labels=[e.label for e in val_set], image_size=image_size,
        max_pixels=config.max_pixels, max_drop=config.max_export_drop)
    info_path.write_text(json.dumps(info | {"check": report}, indent=2) + "\n", encoding="utf-8")
    return report
