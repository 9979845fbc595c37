"""The optional steps around the new layer: augmented views of the training images, phase-2 fine-tuning,
and the backbone exported as a feature-vector module of your own (train on B, reuse on A).

Each takes the run's plain values and returns plain values; pipeline.run decides when they run. The
TensorFlow-side modules are imported inside the functions: the input checks must stay TensorFlow-free.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from retrain.config import Config
from retrain.inputs import scan
from retrain.reports import summary

log = logging.getLogger(__name__)


class WithViews:
    """A feature source whose rows past the original N are augmented views of training rows: row
    N + v * count + i is view v of the i-th training row.

    Reads like the source it wraps (chunks of (rows, float32 [n, D])); each view is a FeatureMatrix,
    file-backed when large, so views cost disk, not memory, on big sets.
    """

    stable = True

    def __init__(self, source, views: list) -> None:
        self.source, self.views, self.n = source, views, len(source.kept)
        self.count, self.dim = len(views[0]), source.dim

    def chunks(self, rows: np.ndarray, size: int):
        """Chunks of `rows` in their order, originals and views mixed as they come (a trainer's shuffle)."""
        rows = np.asarray(rows, np.int64)
        for start in range(0, len(rows), size):
            part = rows[start:start + size]
            originals = [(read, x) for read, x in self.source.chunks(part[part < self.n], size)]
            extra = part[part >= self.n]
            which, index = np.divmod(extra - self.n, self.count)
            viewed = np.empty((len(extra), self.dim), np.float32)
            for v in np.unique(which):
                viewed[which == v] = self.views[v].read(index[which == v])
            yield (np.concatenate([read for read, _ in originals] + [extra]),
                   np.concatenate([x for _, x in originals] + [viewed]))


def add_views(config: Config, module, image_size: int, source, y: np.ndarray, train_rows: np.ndarray,
              paths: list[Path], workdir: Path, settings=None):
    """(source with --augment-views views of each training row appended, labels for every row, int
    [n, 1 + V] training rows: each image's row, then its views'). Each view is computed once and cached
    like plain features; workdir holds large view matrices for as long as the source is read (the
    caller owns it). settings: augment.AugmentSettings, the defaults when None."""
    from retrain.features import views
    from retrain.images import augment

    settings = settings or augment.AugmentSettings()
    train_paths = [paths[i] for i in train_rows]
    extra = [views.view_features(train_paths, module=module, image_size=image_size, engine=config.engine,
                                 cache_dir=config.feature_cache_dir, batch_size=config.batch_size,
                                 max_pixels=config.max_pixels, view=v, seed=config.seed, settings=settings,
                                 workdir=workdir, digests=[source.digests[i] for i in train_rows])
             for v in range(config.augment_views)]
    n, count = len(y), len(train_rows)
    rows = np.column_stack([train_rows] + [n + v * count + np.arange(count) for v in range(len(extra))])
    return WithViews(source, extra), np.concatenate([y, np.tile(y[train_rows], len(extra))]), rows


def augmented_head(config: Config, module, image_size: int, source, y: np.ndarray, rows: dict[str, np.ndarray],
                   paths: list[Path], plain, train, workdir: Path) -> tuple[object, dict]:
    """(the head to export as a training.HeadResult, the --augment report).

    Views help where the features are not yet invariant to what they vary, and pull the head away from
    the images as they will be served; the two heads err differently, so their average (one layer: see
    model.average) is usually better than either. Of the head trained without views (`plain`), the one
    trained with them and their average, the lowest validation loss is exported, so views do no harm
    on the validation images. train(source, labels, train_rows) -> HeadResult trains with the run's settings.
    """
    fed = add_views(config, module, image_size, source, y, rows["train"], paths, workdir)
    log.info("training a second new layer: each epoch, every training image and one of its %d views",
             config.augment_views)
    with_views = train(*fed)
    return choose(plain, with_views, source, y, rows["validation"], config.augment_views)


def choose(plain, with_views, source, y: np.ndarray, val_rows: np.ndarray, views: int) -> tuple[object, dict]:
    """Of plain, with_views (training.HeadResult) and their average, the one with the lowest loss on
    source's val_rows, as a HeadResult (the average keeps plain's epoch and history), and the report."""
    from retrain.backbone import keras_models
    from retrain.training import trainer

    heads = {"without": plain.head, "average": keras_models.average(plain.head, with_views.head),
             "with": with_views.head}
    scores = {name: trainer.score(head, source, y, val_rows) for name, head in heads.items()}
    kept = min(scores, key=lambda name: scores[name][0])  # on a tie (or nan: no validation row), the first
    report = {"kept": kept, "views": views, "val_loss": {name: loss for name, (loss, _) in scores.items()},
              "val_accuracy": {name: accuracy for name, (_, accuracy) in scores.items()}}
    log.debug("augment: %s", summary.augment_text(report))  # the summary says it at the end of the run
    chosen = with_views if kept == "with" else plain
    return dataclasses.replace(chosen, head=heads[kept], val_loss=scores[kept][0], val_accuracy=scores[kept][1]), report


def phase_two(config: Config, module, image_size: int, head, kept: dict[str, list[scan.Example]], digests: dict,
              workdir: Path):
    """Phase-2 fine-tuning of the top of the backbone with the phase-1 head (updated in place); returns
    finetune.Phase2. digests: path -> SHA-256 of the file, for the cache of activations at the cut;
    workdir (the caller's) holds activations too large for memory."""
    from retrain.features import views
    from retrain.training import finetune

    batches = {name: views.file_batches([e.path for e in kept[name]], [e.label for e in kept[name]], image_size,
                                        config.max_pixels, finetune.FineTuneSettings.batch_size, strict=True)
               for name in ("train", "validation")}
    settings = finetune.FineTuneSettings(layers=config.fine_tune_layers, learning_rate=config.fine_tune_learning_rate,
                                         epochs=config.fine_tune_epochs, seed=config.seed,
                                         mixed_precision=config.mixed_precision)
    keys = tuple([digests[e.path] for e in kept[name]] for name in ("train", "validation"))
    return finetune.fine_tune(module.path, image_size, head, batches["train"], batches["validation"], settings,
                              cache_dir=config.feature_cache_dir if config.use_cache else None, keys=keys,
                              workdir=workdir)


def export_backbone(config: Config, phase2, module, image_size: int, run_dir: Path) -> Path | None:
    """Write the backbone without any classification layer as a TF-Hub feature-vector module: to
    --export-module, else (when phase 2 changed it) to runs/N/feature_vector, which the export then uses.
    Returns the folder, or None when nothing was written."""
    from retrain.backbone import trainable

    if config.export_module is None and (phase2 is None or not phase2.kept):
        return None
    target = Path(config.export_module) if config.export_module is not None else run_dir / "feature_vector"
    trained = phase2.backbone if phase2 is not None else trainable.load(module.path)
    return trainable.export_module(trained, image_size, target)


def report(phase2) -> dict | None:
    """Phase 2 in plain values for metrics.json, run.json and the summary."""
    if phase2 is None:
        return None
    return {"kept": phase2.kept, "before": {"val_loss": phase2.before[0], "val_accuracy": phase2.before[1]},
            "after": {"val_loss": phase2.after[0], "val_accuracy": phase2.after[1]}, "epochs": phase2.epochs,
            "trained_blocks": phase2.trained_blocks, "seconds_per_epoch": round(phase2.seconds_per_epoch, 1)}
