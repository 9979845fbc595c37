"""A feature-vector backbone to fine-tune and to export as a TF-Hub module of your own.

`load` gives the bundled EfficientNet-Lite0 (and every module retrain exports from it) back as a
`lite0.Lite0` with its 16 blocks, rebuilt from the SavedModel's variables, so that `--fine-tune-layers`
can train only the top blocks; any other TF2 module comes back as the restored object, trained whole.
`export_module` writes a backbone, without any classification layer, as a TF2 reusable SavedModel in
TF-Hub image feature-vector form: float32 [N, H, W, 3] in [0, 1] -> float32 [N, D], with `variables`,
`trainable_variables`, `regularization_losses`, and __call__ traced for training=False and True.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import tensorflow as tf

from retrain import fs
from retrain.backbone import lite0
from retrain.errors import RetrainError

log = logging.getLogger(__name__)

_PARTS = ("kernel", "gamma", "beta", "moving_mean", "moving_variance")


def _lite0_layers(obj) -> dict | None:
    """{scope: {part: array}} when obj's variables are exactly a Lite0's (by name and count), else None."""
    named = {v.name.split(":")[0]: v for v in list(getattr(obj, "variables", None) or [])}
    scopes = {name.rsplit("/", 1)[0] for name in named if name.rsplit("/", 1)[-1] in _PARTS}
    if not {"stem", "head", "block_0/depthwise", "block_15/project"} <= scopes:
        return None
    try:
        layers = {scope: {part: named[f"{scope}/{part}"].numpy() for part in _PARTS} for scope in scopes}
    except KeyError:
        return None
    return layers if len(named) == len(scopes) * len(_PARTS) else None


def load(path: str | Path) -> tf.Module:
    """The module at path: a `lite0.Lite0` (blocks exposed, weights copied) when its variables are a
    Lite0's, else the restored SavedModel object itself (opaque: every variable trains)."""
    obj = tf.saved_model.load(str(path))
    layers = _lite0_layers(obj)
    if layers is None:
        log.info("module %s: no block structure found; fine-tuning trains all its variables", path)
        return obj
    log.info("module %s: EfficientNet-Lite0 blocks found", path)
    return lite0.Lite0(layers)


def block_count(backbone) -> int | None:
    """Number of blocks `--fine-tune-layers` counts (16 for Lite0), None for an opaque module."""
    return len(backbone.blocks) if isinstance(backbone, lite0.Lite0) else None


def takes_training(obj) -> bool:
    """Whether obj's __call__ has a `training` argument (as hub.KerasLayer decides for TF2 modules)."""
    if not callable(obj):
        return False
    functions = list(getattr(obj.__call__, "concrete_functions", None) or [])
    return any("training" in (f.structured_input_signature[1] or {}) or
               len(f.structured_input_signature[0]) > 1 for f in functions)


def call(backbone, images: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Features of images through any backbone, passing `training` only where the module takes it."""
    if isinstance(backbone, lite0.Lite0) or takes_training(backbone):
        return backbone(images, training=training)
    return backbone(images)


class _Opaque(tf.Module):
    """A restored (fine-tuned) module re-wrapped so that it saves in the reusable SavedModel form."""

    variables = trainable_variables = regularization_losses = None

    def __init__(self, inner):
        super().__init__(name="feature_vector")
        self.inner = inner
        self.variables = list(inner.variables)
        self.trainable_variables = list(inner.trainable_variables)
        self.regularization_losses = list(getattr(inner, "regularization_losses", None) or [])
        self._takes_training = takes_training(inner)

    @tf.function
    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.inner(images, training=training) if self._takes_training else self.inner(images)


def export_module(backbone, image_size: int, out_dir: str | Path) -> Path:
    """Write backbone as a TF-Hub image feature-vector SavedModel at out_dir and return out_dir.

    Input float32 [N, image_size, image_size, 3] in [0, 1]; batch norm honours `training`. The folder
    is staged beside out_dir and renamed into place (retrain.fs), so out_dir is complete or absent.
    Raises RetrainError when out_dir already exists (never overwritten).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise RetrainError(f"--export-module: {out_dir} already exists; expected a new folder name")
    module = backbone if isinstance(backbone, lite0.Lite0) else _Opaque(backbone)
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")
    inference = module.__call__.get_concrete_function(spec, training=False)
    module.__call__.get_concrete_function(spec, training=True)
    try:
        with fs.staged_dir(out_dir) as staging:
            os.chmod(staging, 0o755)  # readable by other users of a shared module folder
            tf.saved_model.save(module, str(staging), signatures={"serving_default": inference})
    except fs.AlreadyThere:
        raise RetrainError(f"--export-module: {out_dir} appeared while writing; expected a new folder name") from None
    log.info("exported the feature-vector module (%d variables, input %dx%d) to %s",
             len(module.variables), image_size, image_size, out_dir)
    return out_dir
