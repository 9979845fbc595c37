"""Trained Keras model -> a TF Serving SavedModel version, published atomically.

Layout (the README's serving section has the client side):
    <base_dir>/<version>/saved_model.pb, variables/, assets.extra/{labels.txt, export_info.json,
    tf_serving_warmup_requests}
Signatures: serving_default (encoded image bytes), serving_images (float pixels, for converters)
and classify (serialized tf.train.Example), all with batch-major outputs.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import tensorflow as tf

from retrain import fs, stop
from retrain.errors import RetrainError
from retrain.export import assets
from retrain.export.assets import BYTES_SIGNATURE, CLASSIFY_SIGNATURE, EXAMPLE_FEATURE, IMAGES_SIGNATURE
from retrain.images.preprocess import decode_batch

log = logging.getLogger(__name__)


def _signatures(model, labels: list[str], image_size: int, max_pixels: int) -> dict:
    """Concrete functions keyed by signature name; labels become a constant inside each graph."""
    def head(images):
        # N = 0 skips the model: EfficientNet-Lite0's convolutions fail on an empty batch, and an
        # empty request should get empty [0, K] outputs whatever the module.
        scores = tf.cond(tf.shape(images)[0] > 0, lambda: model(images, training=False),
                         lambda: tf.zeros([0, len(labels)]))
        # Row-format REST needs every output batch-major, so the labels are tiled to [N, K].
        classes = tf.tile(tf.constant(labels)[tf.newaxis], [tf.shape(scores)[0], 1])
        return {"scores": scores, "classes": tf.ensure_shape(classes, [None, len(labels)])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve_bytes(image_bytes):
        return head(decode_batch(image_bytes, image_size, max_pixels))

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32)])
    def serve_images(images):
        return {"scores": model(images, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(inputs):
        examples = tf.io.parse_example(inputs, {EXAMPLE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
        return head(decode_batch(examples[EXAMPLE_FEATURE], image_size, max_pixels))

    return {BYTES_SIGNATURE: serve_bytes.get_concrete_function(),
            IMAGES_SIGNATURE: serve_images.get_concrete_function(),
            CLASSIFY_SIGNATURE: classify.get_concrete_function()}


def _holder(model, signatures: dict) -> tf.Module:
    """The object to save: it must track every resource the signatures capture.

    Tracking just the captured variables saves in about a third of the time of tracking the Keras
    model (2 s against 6 s for a MobileNetV2 module), because Keras then serializes every layer's
    call functions too. A module that captures other resources (tables, assets) needs the model.
    """
    holder = tf.Module()
    variables = {id(v): v for function in signatures.values() for v in function.variables}
    handles = {id(v.handle) for v in variables.values()}
    captured = [t for function in signatures.values() for t in function.captured_inputs if t.dtype == tf.resource]
    if all(id(t) in handles for t in captured):
        holder.captured_variables = list(variables.values())
    else:
        log.debug("the model captures resources other than variables: saving the whole Keras model")
        holder.model = model
    return holder


def _module_handle(model) -> str | None:
    """The hub.KerasLayer handle inside the model, if any (read without importing tensorflow_hub)."""
    for layer in getattr(model, "layers", []):
        try:
            handle = layer.get_config().get("handle")
        except (NotImplementedError, TypeError, ValueError):
            continue
        if handle:
            return str(handle)
    return None


def _check_arguments(labels: list[str], image_size: int, version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**63:
        raise RetrainError(f"export version: found {version!r}, expected a non-negative integer")
    if not labels or len(set(labels)) != len(labels) or any(not label or "\n" in label or "\r" in label
                                                            for label in labels):
        raise RetrainError(f"labels: found {labels!r}, expected distinct, non-empty, one-line names")
    if image_size < 1:
        raise RetrainError(f"image size: found {image_size}, expected a positive number of pixels")


def save(model, folder: Path, *, labels: list[str], image_size: int, max_pixels: int, info: dict,
         warmup_images: list[bytes]) -> None:
    """Write the complete SavedModel (signatures and assets.extra) into the empty folder `folder`.

    model: a tf_keras.Model mapping float32 [N, image_size, image_size, 3] in [0, 1] to softmax
    scores float32 [N, len(labels)]. info: extra JSON-able facts (metrics, module, ...) merged into
    assets.extra/export_info.json under the exporter's own facts.
    """
    started = time.perf_counter()
    signatures = _signatures(model, labels, image_size, max_pixels)
    tf.saved_model.save(_holder(model, signatures), str(folder), signatures=signatures)
    facts = assets.facts(labels, image_size, max_pixels, info.get("module_handle") or _module_handle(model))
    warmups = assets.usable_warmups(signatures[BYTES_SIGNATURE], list(warmup_images), image_size)
    assets.write(Path(folder), {**info, **facts}, warmups)
    if not (Path(folder) / "variables" / "variables.index").is_file():
        raise RuntimeError(f"tf.saved_model.save left no variables index in {folder}")
    log.debug("SavedModel saved in %.1f s", time.perf_counter() - started)


def export_saved_model(model, *, labels: list[str], image_size: int, base_dir: Path, version: int,
                       info: dict, max_pixels: int, warmup_images: list[bytes]) -> Path:
    """Write base_dir/<version>/ for TF Serving and return that folder.

    The SavedModel is staged under a hidden non-numeric name (TF Serving ignores it) and renamed into
    place only when complete, so no numeric folder ever lacks its variables. An existing version is
    never overwritten.
    """
    _check_arguments(labels, image_size, version)
    version_dir = Path(base_dir) / str(version)
    higher = [n for n in fs.numbered(base_dir) if n > version]
    if higher:
        log.warning("versions %s are higher than %d: TF Serving keeps serving the highest", sorted(higher), version)
    return publish(model, version_dir, labels=labels, image_size=image_size, max_pixels=max_pixels, info=info,
                   warmup_images=warmup_images)


def publish(model, folder: Path, *, labels: list[str], image_size: int, max_pixels: int, info: dict,
            warmup_images: list[bytes]) -> Path:
    """save() into a staging folder beside `folder`, then rename it to `folder`; never overwrites one."""
    folder = Path(folder)
    try:
        if folder.exists():  # refuse before spending seconds on a save that cannot be published
            raise fs.AlreadyThere(folder)
        with fs.staged_dir(folder) as staging:
            save(model, staging, labels=labels, image_size=image_size, max_pixels=max_pixels, info=info,
                 warmup_images=warmup_images)
            stop.check()  # a stop asked for while saving: the staged folder goes, nothing is published
    except fs.AlreadyThere:
        raise RetrainError(f"export: found an existing {folder}, expected a new version number") from None
    return folder


def promote(staged: Path, version_dir: Path) -> Path:
    """Move a complete export into TF Serving's base path in one rename; never over an existing version.

    The run exports into its own folder first and publishes only once its reports are written, so a
    failure anywhere before leaves no version for TF Serving to load.
    """
    try:
        fs.move_into_place(Path(staged), Path(version_dir))
    except fs.AlreadyThere:
        raise RetrainError(f"export: found an existing {version_dir}, expected a new version number") from None
    return Path(version_dir)
