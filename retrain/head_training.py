"""Train the new layer on feature vectors: mini-batch Adam, early stopping, best weights kept."""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from retrain import extract, model
from retrain.config import Config

log = logging.getLogger(__name__)

CHUNK_ROWS = 16384  # feature rows held in memory at once (84 MB at D=1280): bounds memory for any data set


def _chunks(features: np.ndarray, labels: np.ndarray, order: np.ndarray):
    """(float32 [C, D], int32 [C]) tensors of the rows in `order`, CHUNK_ROWS at a time, read in file order.

    `features` must be extract_features' whole result (never a slice of its memmap): read_rows maps
    the file afresh for each chunk, so the pages read do not stay resident.
    """
    for start in range(0, len(order), CHUNK_ROWS):
        rows = np.sort(order[start:start + CHUNK_ROWS])
        yield tf.constant(extract.read_rows(features, rows)), tf.constant(labels[rows])


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

    def epoch(self, features: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
        """One pass over features[rows] in a fresh random order."""
        if len(rows) <= CHUNK_ROWS:
            self._cached = self._cached or list(_chunks(features, labels, rows))
            chunks = self._cached
        else:
            chunks = _chunks(features, labels, self.rng.permutation(rows))
        for x, y in chunks:
            self._train_chunk(x, y)

    def evaluate(self, features: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, accuracy in [0, 1]) of features[rows] without dropout."""
        total_loss = total_hits = 0.0
        for x, y in _chunks(features, labels, rows):
            loss, hits = self._chunk_stats(x, y)
            total_loss, total_hits = total_loss + float(loss), total_hits + float(hits)
        return total_loss / len(rows), total_hits / len(rows)


def fit(features: np.ndarray, labels: np.ndarray, n_train: int, num_classes: int, config: Config):
    """Train a fresh head on rows [:n_train], stop early on the loss of rows [n_train:].

    features: float32 [N, D] (array or np.memmap); labels: int32 [N] in [0, num_classes).
    Returns (head, epoch of the kept weights, validation accuracy in [0, 1] of those weights).
    """
    head = model.build_head(features.shape[1], num_classes, config.dropout)
    trainer = HeadTrainer(head, config.learning_rate, config.batch_size, config.seed)
    train_rows, val_rows = np.arange(n_train), np.arange(n_train, len(labels))
    log.info("training the new layer on %d cached feature vectors (up to %d epochs)", n_train, config.epochs)
    best = (np.inf, 0.0, 0, head.get_weights())
    for epoch in range(1, config.epochs + 1):
        trainer.epoch(features, labels, train_rows)
        val_loss, val_acc = trainer.evaluate(features, labels, val_rows)
        model.log_epoch(epoch, config.epochs, val_loss, val_acc)
        if val_loss < best[0]:
            best = (val_loss, val_acc, epoch, head.get_weights())
        elif epoch - best[2] >= config.patience:
            break
    head.set_weights(best[3])
    log.info("kept the weights of epoch %d (validation loss %.4f, accuracy %.3f)", best[2], best[0], best[1])
    return head, best[2], best[1]
