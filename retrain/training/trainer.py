"""The new layer trained on feature vectors: one loop, one epoch log, whatever computes the features.

The features come from a source with `chunks(rows, size)` yielding (rows, float32 [n, D]): a
FeatureMatrix filled from the cache (stable: read once, kept in memory when it fits) or, with
--no-cache, LiveFeatures running the frozen backbone on every image in every epoch.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import tensorflow as tf

from retrain import stop
from retrain.backbone import keras_models
from retrain.errors import RetrainError

log = logging.getLogger(__name__)

CHUNK_ROWS = 16384  # feature rows held in memory at once (84 MB at D=1280): bounds memory for any data set


@dataclasses.dataclass
class HeadResult:
    head: object            # tf_keras Sequential: float32 [N, D] -> softmax [N, K], weights of the kept epoch
    epoch: int              # the kept epoch, 1-based
    val_loss: float         # mean cross-entropy of the kept weights on the validation rows
    val_accuracy: float     # in [0, 1]
    history: list[dict]     # per epoch: epoch, loss, accuracy, val_loss, val_accuracy


class _Trainer:
    """Mini-batch Adam, a whole chunk of batches per tf.function call.

    One Python step per chunk (an epoch, on cached features that fit one chunk) instead of one per
    batch is what makes an epoch cost milliseconds.
    """

    def __init__(self, head, learning_rate: float, batch_size: int, class_weights: np.ndarray | None):
        self.head, self.batch_size = head, batch_size
        self.optimizer = keras_models.adam(learning_rate)
        self.optimizer.build(head.trainable_variables)
        self.loss = keras_models.cross_entropy()
        k = head.output_shape[-1]
        self.weights = tf.constant(np.ones(k) if class_weights is None else class_weights, tf.float32)

    @tf.function(reduce_retracing=True)
    def train_chunk(self, x, y):
        """Train on one chunk in a random order; returns (sum of batch losses x sizes, hits) in training mode."""
        n = tf.shape(x)[0]
        order = tf.random.shuffle(tf.range(n))
        total, hits = tf.constant(0.0), tf.constant(0.0)
        for start in tf.range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                scores = self.head(xb, training=True)
                loss = self.loss(yb, scores, sample_weight=tf.gather(self.weights, yb))
            grads = tape.gradient(loss, self.head.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.head.trainable_variables))
            size = tf.cast(tf.shape(idx)[0], tf.float32)
            total += loss * size
            hits += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(scores, 1, output_type=tf.int32), yb), tf.float32))
        return total, hits

    @tf.function(reduce_retracing=True)
    def score_chunk(self, x, y):
        """(sum of cross-entropy, hits) without dropout."""
        scores = self.head(x, training=False)
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(scores, axis=1, output_type=tf.int32), y), tf.float32))
        return self.loss(y, scores) * tf.cast(tf.shape(x)[0], tf.float32), hits


class _Chunks:
    """The (x, y) tensor chunks of some rows of a source, pass after pass.

    rows: int [n]; or int [n, 1 + V], an image's row in column 0 and the rows of its V augmented views
    after it: each pass then takes every image once as it is and once as one of its views drawn at
    random, so half the weight stays on images as they will be served, whatever V is. 1-D rows of a
    stable source that fit in one chunk are kept in memory; otherwise they are read again on every pass
    (in a fresh random order when rng is given).
    """

    def __init__(self, source, labels: np.ndarray, rows: np.ndarray, rng: np.random.Generator | None = None):
        self.source, self.labels, self.rows, self.rng = source, labels, np.asarray(rows, np.int64), rng
        fixed = source.stable and self.rows.ndim == 1 and len(self.rows) <= CHUNK_ROWS
        self._kept = list(self._read(self.rows)) if fixed else None

    def _read(self, rows: np.ndarray):
        for read_rows, x in self.source.chunks(rows, CHUNK_ROWS):
            yield tf.constant(x), tf.constant(self.labels[read_rows])

    def __iter__(self):
        if self._kept is not None:
            return iter(self._kept)
        rows = self.rows
        if rows.ndim == 2:
            views = rows[np.arange(len(rows)), self.rng.integers(1, rows.shape[1], len(rows))]
            rows = np.concatenate([rows[:, 0], views])
        return self._read(self.rng.permutation(rows) if self.rng is not None else rows)


def _pass(step, chunks: _Chunks) -> tuple[float, float]:
    """Run step(x, y) -> (summed loss, hits) over every chunk; returns (mean loss, accuracy in [0, 1])."""
    total = hits = count = 0.0
    for x, y in chunks:
        loss, right = step(x, y)
        total, hits, count = total + float(loss), hits + float(right), count + int(y.shape[0])
    return total / max(count, 1), hits / max(count, 1)


def _log_epoch(row: dict, epochs: int) -> None:
    """The training progress display: the first and every tenth epoch at info, the others at debug."""
    level = logging.INFO if row["epoch"] == 1 or row["epoch"] % 10 == 0 else logging.DEBUG
    log.log(level, "epoch %d/%d  loss %.4f  accuracy %.3f  val_loss %.4f  val_accuracy %.3f", row["epoch"], epochs,
            row["loss"], row["accuracy"], row["val_loss"], row["val_accuracy"])


def _check_finite(row: dict, learning_rate: float) -> None:
    """A loss that is nan or inf never comes back: stop the run (nothing is exported) with one line."""
    bad = {key: row[key] for key in ("loss", "val_loss") if not math.isfinite(row[key])}
    if bad:
        found = ", ".join(f"{key} {value}" for key, value in bad.items())
        raise RetrainError(f"training: {found} at epoch {row['epoch']} with --learning-rate {learning_rate:g}; "
                           "expected finite losses (try a lower --learning-rate; nothing was published)")


def train_head(source, labels: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray, num_classes: int, *,
               dropout: float, learning_rate: float, batch_size: int, epochs: int, patience: int, seed: int,
               class_weights: np.ndarray | None = None) -> HeadResult:
    """Train a fresh head on source rows train_rows, stopping early on the loss of val_rows.

    source: a FeatureMatrix or LiveFeatures over [N, D] features; labels: int32 [N] in [0, num_classes).
    train_rows: int [n], or int [n, 1 + V] with each image's V augmented views after it (see _Chunks).
    class_weights: float [num_classes] loss weights, or None for equal weights. Early stopping keeps the
    weights of the epoch with the lowest validation loss, after `patience` epochs without a better one.
    """
    keras_models.set_seed(seed)
    head = keras_models.build_head(source.dim, num_classes, dropout)
    trainer = _Trainer(head, learning_rate, batch_size, class_weights)
    train = _Chunks(source, labels, train_rows, np.random.default_rng(seed))
    val = _Chunks(source, labels, val_rows)
    history: list[dict] = []
    best = (np.inf, 0.0, 0, head.get_weights())
    for epoch in range(1, epochs + 1):
        stop.check()
        loss, accuracy = _pass(trainer.train_chunk, train)
        val_loss, val_accuracy = _pass(trainer.score_chunk, val)
        history.append(dict(epoch=epoch, loss=loss, accuracy=accuracy, val_loss=val_loss, val_accuracy=val_accuracy))
        _log_epoch(history[-1], epochs)
        _check_finite(history[-1], learning_rate)
        if val_loss < best[0]:
            best = (val_loss, val_accuracy, epoch, head.get_weights())
        elif epoch - best[2] >= patience:
            break
    head.set_weights(best[3])
    log.info("kept the weights of epoch %d of %d (validation loss %.4f)", best[2], len(history), best[0])
    return HeadResult(head, best[2], float(best[0]), float(best[1]), history)


def predict(head, source, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the rows that have features, their softmax scores float32 [n, K]) from the trained head, no dropout."""
    kept, scores = [], []
    for read_rows, x in source.chunks(np.asarray(rows, np.int64), CHUNK_ROWS):
        kept.append(read_rows)
        scores.append(np.asarray(head(x, training=False), np.float32))
    k = head.output_shape[-1]
    return (np.concatenate(kept) if kept else np.zeros(0, np.int64),
            np.concatenate(scores) if scores else np.zeros((0, k), np.float32))


def score(head, source, labels: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy in nats, accuracy in [0, 1]) of the head on the source rows that have features,
    without dropout, or (nan, nan) when none has; labels: int [N] over all source rows."""
    found, scores = predict(head, source, rows)
    if not len(found):
        return float("nan"), float("nan")
    truth = labels[found]
    return float(keras_models.cross_entropy()(truth, scores)), float(np.mean(scores.argmax(1) == truth))
