"""Phase 2 of two-phase fine-tuning: the head trained on frozen features (phase 1), then the top of the
backbone and the head together at a low learning rate, batch normalization kept in inference mode.

Why inference mode: with batch statistics (what Keras' fit does to hub.KerasLayer(trainable=True), since
the layer passes the model's training=True on), one epoch at Adam 1e-5 dropped validation accuracy from
0.872 to 0.670 on Fashion-MNIST here. So the backbone is always called with training=False while its
kernels, gammas and betas train, in a loop of our own rather than Keras' fit.

Why the cut: on a module with blocks (the bundled Lite0 and modules retrain exports), only the top
`layers` blocks train; the frozen bottom's output for an image never changes, so it is computed once
and each epoch runs only the top blocks (docs/benchmarks.md has the per-epoch times). An opaque module
trains whole, every image through it in every epoch.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import stop
from retrain.backbone import keras_models, resolve
from retrain.backbone import trainable as bb
from retrain.config import Config
from retrain.errors import RetrainError
from retrain.features import cut_cache
from retrain.features.extraction import Extractor
from retrain.images import preprocess
from retrain.inputs.scan import Example
from retrain.training import batches, distribute

log = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class FineTuneSettings:
    # The options' defaults and their reasons live in config.Config (one home); the rest are phase 2's own.
    layers: int = Config.fine_tune_layers
    learning_rate: float = Config.fine_tune_learning_rate
    epochs: int = Config.fine_tune_epochs
    # Epochs without a better validation loss before stopping; the best epoch's weights are restored.
    patience: int = 2
    # Images per step: 32 fits the activations of the top blocks of Lite0 in well under 1 GB.
    batch_size: int = 32
    seed: int = Config.seed
    mixed_precision: bool = Config.mixed_precision


@dataclasses.dataclass(frozen=True)
class Phase2:
    backbone: object               # lite0.Lite0 or a restored module: fine-tuned, or as loaded when not kept
    head: object                   # the tf_keras head, phase 2's weights when kept, else phase 1's
    kept: bool                     # phase 2 lowered the validation loss, so its weights are the ones returned
    before: tuple[float, float]    # (validation loss, accuracy in [0, 1]) of phase 1
    after: tuple[float, float]     # the same for the returned weights
    epochs: int                    # phase-2 epochs run
    seconds_per_epoch: float       # mean wall time of one training pass (the first, which traces, left out)
    cut_seconds: float             # wall time of the one pass through the frozen bottom (0 without a cut)
    trained_blocks: int | None     # blocks that trained; None: the whole backbone


def _plan(backbone, settings: FineTuneSettings, train: batches.Batches, val: batches.Batches, caches, workdir: Path):
    """(forward(x) -> features, trained backbone variables, train batches, val batches, blocks or None).

    caches: None, or cut -> (FeatureCache, train keys, val keys) for the activations at the cut, which
    are held under workdir when large."""
    blocks = bb.block_count(backbone)
    if blocks is None or settings.layers >= blocks:
        variables = list(getattr(backbone, "trainable_variables", None) or [])
        if not variables:
            raise RetrainError("--fine-tune: the module has no trainable_variables; expected a TF2 reusable "
                               "SavedModel (one that hub.KerasLayer loads with trainable=True)")
        log.info("phase 2 trains the whole backbone: every image through it in every epoch")
        return (lambda x: bb.call(backbone, x, training=False)), variables, train, val, None
    cut = blocks - settings.layers
    log.info("phase 2 trains the top %d of %d blocks; the activations entering block %d are computed once",
             settings.layers, blocks, cut)
    bottom = tf.function(lambda x: backbone.bottom(x, cut, training=False), reduce_retracing=True)
    cache, train_keys, val_keys = caches(cut) if caches is not None else (None, None, None)
    x_train, y_train, shape = cut_cache.activations(bottom, train, train_keys, cache, workdir)
    x_val, y_val, _ = cut_cache.activations(bottom, val, val_keys, cache, workdir)
    top = [*backbone.blocks[cut:], backbone.head]
    variables = [v for m in top for v in m.trainable_variables]
    return ((lambda x: backbone.top(x, cut, training=False)), variables,
            batches.array_batches(x_train, y_train, settings.batch_size, settings.seed, shape),
            batches.array_batches(x_val, y_val, settings.batch_size, shape=shape), settings.layers)


class _Loop:
    """One training step and one evaluation over (x, y) batches; x goes through forward, then the head."""

    def __init__(self, forward, head, variables: list, settings: FineTuneSettings, mixed: bool):
        self.forward, self.head, self.variables = forward, head, variables
        self.dtype = tf.float16 if mixed else tf.float32
        self.optimizer = keras_models.adam(settings.learning_rate)
        self.optimizer.build(variables)  # slots made here, not inside the traced step
        self.optimizer = keras_models.loss_scaled(self.optimizer) if mixed else self.optimizer
        self.loss = keras_models.cross_entropy()
        self.per_example = keras_models.cross_entropy(per_example=True)
        self.strategy = distribute.current()
        self.step = tf.function(self._step, reduce_retracing=True)
        self.stats = tf.function(self._stats, reduce_retracing=True)

    def _scores(self, x, training: bool):
        features = tf.cast(self.forward(tf.cast(x, self.dtype)), tf.float32)
        return self.head(features, training=training)  # the head's dropout follows `training`; batch norm never

    def _step(self, x, y, size):
        """One update, in one replica, on its share (x, y) of a global batch of `size` rows: losses are
        summed over the share and divided by `size`, so the gradients all-reduced over the replicas are
        the single-process gradients of the whole batch."""
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(self.per_example(y, self._scores(x, True)), global_batch_size=size)
            scaled = self.optimizer.get_scaled_loss(loss) if self.dtype == tf.float16 else loss
        grads = tape.gradient(scaled, self.variables)
        if self.dtype == tf.float16:
            grads = self.optimizer.get_unscaled_gradients(grads)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return loss

    def _stats(self, x, y):
        scores = self._scores(x, False)
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(scores, axis=1, output_type=tf.int32), y), tf.float32))
        return self.loss(y, scores) * tf.cast(tf.shape(y)[0], tf.float32), hits

    def evaluate(self, batches: batches.Batches) -> tuple[float, float]:
        """(mean cross-entropy, accuracy in [0, 1]) over the set, no dropout, batch norm in inference mode."""
        loss = hits = count = 0.0
        for x, y in batches():
            batch_loss, batch_hits = self.stats(tf.constant(x), tf.constant(y, tf.int32))
            loss, hits, count = loss + float(batch_loss), hits + float(batch_hits), count + len(y)
        return loss / count, hits / count

    def _share(self, rows: np.ndarray):
        """Replica r of R takes rows r::R of a global batch (every worker reads the same batches)."""
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(rows[ctx.replica_id_in_sync_group::ctx.num_replicas_in_sync]))

    def epoch(self, batches: batches.Batches) -> None:
        replicas = self.strategy.num_replicas_in_sync
        for x, y in batches():
            if len(y) < replicas:  # a remainder too small to give every replica a row: left out
                continue
            self.strategy.run(self.step, args=(self._share(x), self._share(np.asarray(y, np.int32)),
                                               tf.constant(len(y), tf.int32)))


def fine_tune(module_path: str, image_size: int, head, train: batches.Batches, val: batches.Batches,
              settings: FineTuneSettings, cache_dir: Path | None = None,
              keys: tuple[list[str], list[str]] | None = None, *, workdir: Path) -> Phase2:
    """Phase 2 on the module at module_path with the phase-1 head (a tf_keras model: features -> softmax).

    train/val yield image_size images. Early stopping on validation loss with the best epoch's weights
    restored; when no epoch beats phase 1's validation loss, phase 1's weights come back unchanged and
    `kept` is False. The head is updated in place. With cache_dir and keys (SHA-256 of each training and
    validation file, in batch order) the activations at the cut are kept in the cache between runs.
    workdir: a folder the caller owns and deletes, holding activations too large for memory.
    """
    keras_models.set_seed(settings.seed)
    caches = None if cache_dir is None or keys is None else (lambda cut: (cut_cache.open_cut_cache(
        cache_dir, str(module_path), resolve.fingerprint(module_path), image_size, preprocess.PREPROCESS_VERSION,
        cut), *keys))
    with distribute.current().scope():  # variables made here are mirrored across replicas
        backbone, head_copy, start = bb.load(module_path), keras_models.copy(head), time.perf_counter()
        forward, variables, train_set, val_set, blocks = _plan(backbone, settings, train, val, caches, workdir)
        cut_seconds = time.perf_counter() - start
        mixed = settings.mixed_precision and bb.block_count(backbone) is not None  # float16 needs our own ops
        if settings.mixed_precision and not mixed:
            log.info("--mixed-precision: this module is opaque; it computes in float32")
        loop = _Loop(forward, head_copy, variables + list(head_copy.trainable_variables), settings, mixed)
    before = best = loop.evaluate(val_set)
    log.info("phase 2 starts from validation loss %.4f, accuracy %.3f", *before)
    best_epoch, saved, seconds, epoch = 0, [v.numpy() for v in loop.variables], [], 0
    for epoch in range(1, settings.epochs + 1):
        stop.check()
        start = time.perf_counter()
        loop.epoch(train_set)
        seconds.append(time.perf_counter() - start)
        current = loop.evaluate(val_set)
        log.info("fine-tune epoch %d/%d  val_loss %.4f  val_acc %.3f  (%.0f s)", epoch, settings.epochs,
                 *current, seconds[-1])
        if current[0] < best[0]:
            best, best_epoch, saved = current, epoch, [v.numpy() for v in loop.variables]
        elif epoch - best_epoch >= settings.patience:
            break
    for variable, value in zip(loop.variables, saved):
        variable.assign(value)
    log.info(f"phase 2 kept epoch {best_epoch}: validation loss {before[0]:.4f} -> {best[0]:.4f}, accuracy "
             f"{before[1]:.3f} -> {best[1]:.3f}" if best_epoch else
             f"phase 2 did not lower validation loss ({before[0]:.4f}); keeping the phase-1 model")
    head.set_weights(head_copy.get_weights())  # the caller's head: phase 2's weights when kept, else phase 1's
    return Phase2(backbone=backbone, head=head, kept=best_epoch > 0, before=before, after=best, epochs=epoch,
                  seconds_per_epoch=float(np.mean(seconds[1:] or seconds or [0.0])), cut_seconds=cut_seconds,
                  trained_blocks=blocks)


def phase_two(extractor: Extractor, head, kept: dict[str, list[Example]], digests: dict[Path, str],
              settings: FineTuneSettings) -> Phase2:
    """Phase-2 fine-tuning of the extractor's module with the phase-1 head (updated in place), on the
    training and validation examples that kept features. digests: path -> SHA-256 of the file, keying
    the cache of activations at the cut (kept in the extractor's cache; none without one); the
    extractor's workdir holds activations too large for memory."""
    sets = {name: batches.file_batches([e.path for e in kept[name]], [e.label for e in kept[name]],
                                       extractor.image_size, extractor.max_pixels, FineTuneSettings.batch_size,
                                       strict=True)
            for name in ("train", "validation")}
    keys = tuple([digests[e.path] for e in kept[name]] for name in ("train", "validation"))
    return fine_tune(extractor.module.path, extractor.image_size, head, sets["train"], sets["validation"], settings,
                     cache_dir=extractor.cache_dir, keys=keys, workdir=extractor.workdir)


def report(phase2: Phase2 | None) -> dict | None:
    """Phase 2 in plain values for metrics.json, run.json and the summary."""
    if phase2 is None:
        return None
    return {"kept": phase2.kept, "before": {"val_loss": phase2.before[0], "val_accuracy": phase2.before[1]},
            "after": {"val_loss": phase2.after[0], "val_accuracy": phase2.after[1]}, "epochs": phase2.epochs,
            "trained_blocks": phase2.trained_blocks, "seconds_per_epoch": round(phase2.seconds_per_epoch, 1)}
