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

from retrain import data, export, extract, model, modules, preprocess
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


CHUNK_ROWS = 16384  # feature rows held in memory at once (84 MB at D=1280): bounds memory for any data set


def _chunks(features: np.ndarray, labels: np.ndarray, order: np.ndarray):
    """(float32 [C, D], int32 [C]) tensors of the rows in `order`, CHUNK_ROWS at a time, read in file order."""
    for start in range(0, len(order), CHUNK_ROWS):
        rows = np.sort(order[start:start + CHUNK_ROWS])
        yield tf.constant(np.asarray(features[rows], np.float32)), tf.constant(labels[rows])


class HeadTrainer:
    """Mini-batch Adam on feature vectors, a whole chunk of batches per tf.function call.

    One Python step per epoch (per chunk on big sets) instead of one per batch is what makes an
    epoch cost milliseconds; the data sets that fit in one chunk are converted to tensors only once.
    """

    def __init__(self, head, learning_rate: float, batch_size: int, seed: int):
        self.head, self.batch_size = head, batch_size
        self.optimizer = model.adam(learning_rate)
        self.optimizer.build(head.trainable_variables)
        self.rng = np.random.default_rng(seed)
        self.loss = model.cross_entropy()
        self._cached: list | None = None

    @tf.function(reduce_retracing=True)
    def _train_chunk(self, x, y):
        n = tf.shape(x)[0]
        order = tf.random.shuffle(tf.range(n))
        for start in tf.range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            with tf.GradientTape() as tape:
                loss = self.loss(tf.gather(y, idx), self.head(tf.gather(x, idx), training=True))
            grads = tape.gradient(loss, self.head.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.head.trainable_variables))

    @tf.function(reduce_retracing=True)
    def _chunk_stats(self, x, y):
        scores = self.head(x, training=False)
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(scores, axis=1, output_type=tf.int32), y), tf.float32))
        return self.loss(y, scores) * tf.cast(tf.shape(x)[0], tf.float32), hits

    def epoch(self, features: np.ndarray, labels: np.ndarray) -> None:
        """One pass over all rows in a fresh random order."""
        if len(labels) <= CHUNK_ROWS:
            self._cached = self._cached or list(_chunks(features, labels, np.arange(len(labels))))
            chunks = self._cached
        else:
            chunks = _chunks(features, labels, self.rng.permutation(len(labels)))
        for x, y in chunks:
            self._train_chunk(x, y)

    def evaluate(self, features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, accuracy in [0, 1]) without dropout."""
        total_loss = total_hits = 0.0
        for x, y in _chunks(features, labels, np.arange(len(labels))):
            loss, hits = self._chunk_stats(x, y)
            total_loss, total_hits = total_loss + float(loss), total_hits + float(hits)
        return total_loss / len(labels), total_hits / len(labels)


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
    head = model.build_head(feats.shape[1], len(labels), config.dropout)
    trainer = HeadTrainer(head, config.learning_rate, config.batch_size, config.seed)
    log.info("training the new layer on %d cached feature vectors (up to %d epochs)", n, config.epochs)
    best = (np.inf, 0.0, 0, head.get_weights())
    for epoch in range(1, config.epochs + 1):
        trainer.epoch(feats[:n], y[:n])
        val_loss, val_acc = trainer.evaluate(feats[n:], y[n:])
        model.log_epoch(epoch, config.epochs, val_loss, val_acc)
        if val_loss < best[0]:
            best = (val_loss, val_acc, epoch, head.get_weights())
        elif epoch - best[2] >= config.patience:
            break
    head.set_weights(best[3])
    log.info("kept the weights of epoch %d (validation loss %.4f, accuracy %.3f)", best[2], best[0], best[1])
    return head, best[2], best[1]


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
        info={"module": config.module, "module_path": info.path, "module_fingerprint": info.fingerprint,
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
