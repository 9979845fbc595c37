"""Trained Keras model -> a TF Serving SavedModel version, published atomically.

Layout (the README's serving section has the client side):
    <base_dir>/<version>/saved_model.pb, variables/, assets.extra/{labels.txt, export_info.json,
    tf_serving_warmup_requests}
Signatures: serving_default (encoded image bytes), serving_images (float pixels, for converters)
and classify (serialized tf.train.Example), all with batch-major outputs.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from retrain.errors import RetrainError
from retrain.preprocess import PREPROCESS_VERSION, decode_batch

log = logging.getLogger(__name__)

BYTES_SIGNATURE, IMAGES_SIGNATURE, CLASSIFY_SIGNATURE = "serving_default", "serving_images", "classify"
BYTES_INPUT, EXAMPLE_FEATURE = "image_bytes", "image/encoded"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to load a model with more warmup records


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
        log.info("The model captures resources other than variables: saving the whole Keras model")
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


def _usable_warmups(serve_bytes, images: list[bytes], image_size: int) -> list[bytes]:
    """The images that replay cleanly (a failing warmup record makes TF Serving refuse the model)."""
    usable = []
    for image in images[:MAX_WARMUP_RECORDS]:
        try:
            serve_bytes(image_bytes=tf.constant([image]))
            usable.append(image)
        except tf.errors.InvalidArgumentError as err:
            log.warning("Skipping a warmup image the served graph refuses: %s", err.message.splitlines()[0])
    if len(images) > MAX_WARMUP_RECORDS:
        log.warning("Keeping %d of %d warmup images (TF Serving's limit)", MAX_WARMUP_RECORDS, len(images))
    if not usable:  # the file is required: fall back to a mid-grey PNG
        usable.append(tf.io.encode_png(tf.fill([image_size, image_size, 3], tf.constant(128, tf.uint8))).numpy())
    return usable


def _write_warmup(path: Path, images: list[bytes]) -> None:
    """TFRecord of PredictionLog records, one serving_default request of batch 1 per image."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in images:
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = BYTES_SIGNATURE
            request.inputs[BYTES_INPUT].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string, shape=[1]))
            record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())


def _write_extras(version_dir: Path, facts: dict, info: dict, warmups: list[bytes]) -> None:
    """assets.extra/: labels.txt, export_info.json (info merged under the exporter's facts), warmup."""
    extra = version_dir / "assets.extra"
    extra.mkdir()
    (extra / "labels.txt").write_text("".join(f"{label}\n" for label in facts["labels"]), encoding="utf-8")
    record = {**info, **facts}
    text = json.dumps(record, indent=2, ensure_ascii=False, default=_jsonable)
    (extra / "export_info.json").write_text(text + "\n", encoding="utf-8")
    _write_warmup(extra / WARMUP_FILE, warmups)


def _jsonable(value):
    """numpy scalars and arrays, paths and the like as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _fsync_dir(folder) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under root to disk, so a power cut cannot publish empty files."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(folder)


def _check_arguments(labels: list[str], image_size: int, version: int, version_dir: Path) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**63:
        raise RetrainError(f"export version: found {version!r}, expected a non-negative integer")
    if version_dir.exists():
        raise RetrainError(f"export: found an existing {version_dir}, expected a new version number")
    if not labels or len(set(labels)) != len(labels) or any(not label or "\n" in label or "\r" in label
                                                            for label in labels):
        raise RetrainError(f"labels: found {labels!r}, expected distinct, non-empty, one-line names")
    if image_size < 1:
        raise RetrainError(f"image size: found {image_size}, expected a positive number of pixels")


def export_saved_model(model, *, labels: list[str], image_size: int, base_dir: Path, version: int,
                       info: dict, max_pixels: int, warmup_images: list[bytes]) -> Path:
    """Write base_dir/<version>/ for TF Serving and return that folder.

    model: a tf_keras.Model mapping float32 [N, image_size, image_size, 3] in [0, 1] to softmax
    scores float32 [N, len(labels)]. The SavedModel is written under base_dir/.tmp-<version>-<pid>
    (TF Serving ignores non-numeric names) and renamed into place only when complete, so no
    numeric folder ever lacks its variables. An existing version is never overwritten.
    info: extra JSON-able facts (metrics, module, ...) merged into assets.extra/export_info.json.
    """
    base_dir = Path(base_dir)
    version_dir = base_dir / str(version)
    _check_arguments(labels, image_size, version, version_dir)
    higher = [p.name for p in base_dir.glob("*") if re.fullmatch(r"[0-9]+", p.name) and int(p.name) > version]
    if higher:
        log.warning("Versions %s are higher than %d: TF Serving keeps serving the highest", higher, version)
    base_dir.mkdir(parents=True, exist_ok=True)
    staging = base_dir / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _save(model, staging, labels, image_size, max_pixels, info, warmup_images)
        os.rename(staging, version_dir)  # atomic on one file system: the version appears complete
        _fsync_dir(base_dir)  # and the rename itself survives a power cut
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("Exported SavedModel version %d to %s", version, version_dir)
    return version_dir


def _save(model, staging: Path, labels, image_size, max_pixels, info, warmup_images) -> None:
    """The complete SavedModel under staging/, flushed to disk."""
    started = time.perf_counter()
    log.info("Saving the SavedModel with signatures %s, %s and %s (takes seconds)",
             BYTES_SIGNATURE, IMAGES_SIGNATURE, CLASSIFY_SIGNATURE)
    signatures = _signatures(model, labels, image_size, max_pixels)
    tf.saved_model.save(_holder(model, signatures), str(staging), signatures=signatures)
    log.info("SavedModel written in %.1f s", time.perf_counter() - started)
    facts = {
        "tensorflow_version": tf.__version__,
        "serve_with": f"TF Serving >= {tf.__version__}",
        "module_handle": info.get("module_handle") or _module_handle(model),
        "image_size": image_size, "labels": list(labels), "max_pixels": max_pixels,
        "preprocess_version": PREPROCESS_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "signatures": {BYTES_SIGNATURE: f"{BYTES_INPUT}: string [N] -> scores [N, K], classes [N, K]",
                       IMAGES_SIGNATURE: f"images: float32 [N, {image_size}, {image_size}, 3] in [0, 1] -> scores",
                       CLASSIFY_SIGNATURE: f"inputs: serialized tf.train.Example with {EXAMPLE_FEATURE}"},
    }
    warmups = _usable_warmups(signatures[BYTES_SIGNATURE], list(warmup_images), image_size)
    _write_extras(staging, facts, info, warmups)
    if not (staging / "variables" / "variables.index").is_file():
        raise RuntimeError(f"tf.saved_model.save left no variables index in {staging}")
    _fsync_tree(staging)
