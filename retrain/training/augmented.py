"""--augment: a second new layer trained on the training images and their augmented views, and the
choice between it, the plain layer and their average by validation loss.

Views help where the features are not yet invariant to what they vary, and pull the head away from
the images as they will be served; the two heads err differently, so their average (one layer: see
keras_models.average) is usually better than either (docs/benchmarks.md).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrain.features.extraction import Extractor
from retrain.features.source import FeatureSource
from retrain.features.views import add_views
from retrain.reports import summary

if TYPE_CHECKING:  # trainer imports TensorFlow; this module is imported before it loads
    from retrain.training.trainer import HeadResult

log = logging.getLogger(__name__)


def augmented_head(extractor: Extractor, source, y: np.ndarray, rows: dict[str, np.ndarray], paths: list[Path],
                   plain: HeadResult, train: Callable[..., HeadResult], *, views: int,
                   seed: int) -> tuple[HeadResult, dict]:
    """(the head to export, the --augment report). Of the head trained without views (`plain`), the one
    trained with `views` views per training image and their average, the lowest validation loss is
    exported, so views do no harm on the validation images. train(source, labels, train_rows) trains
    with the run's settings; rows: split name -> int rows of source."""
    fed = add_views(extractor, source, y, rows["train"], paths, views=views, seed=seed)
    log.info("training a second new layer: each epoch, every training image and one of its %d views", views)
    with_views = train(*fed)
    return choose(plain, with_views, source, y, rows["validation"], views)


def choose(plain: HeadResult, with_views: HeadResult, source: FeatureSource, y: np.ndarray, val_rows: np.ndarray,
           views: int) -> tuple[HeadResult, dict]:
    """Of plain, with_views and their average, the one with the lowest loss on source's val_rows, as a
    HeadResult (the average keeps plain's epoch and history), and the report."""
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
