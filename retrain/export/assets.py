"""assets.extra/ of a SavedModel version: labels.txt, export_info.json and TF Serving's warmup requests."""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from retrain.errors import reason
from retrain.images.preprocess import PREPROCESS_VERSION

log = logging.getLogger(__name__)

BYTES_SIGNATURE, IMAGES_SIGNATURE, CLASSIFY_SIGNATURE = "serving_default", "serving_images", "classify"
BYTES_INPUT, EXAMPLE_FEATURE = "image_bytes", "image/encoded"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to load a model with more warmup records


def usable_warmups(serve_bytes, images: list[bytes], image_size: int) -> list[bytes]:
    """The images that replay cleanly (a failing warmup record makes TF Serving refuse the model)."""
    usable = []
    for image in images[:MAX_WARMUP_RECORDS]:
        try:
            serve_bytes(image_bytes=tf.constant([image]))
            usable.append(image)
        except tf.errors.InvalidArgumentError as err:
            log.warning("skipping a warmup image the served graph refuses: %s", reason(err))
    if len(images) > MAX_WARMUP_RECORDS:
        log.warning("keeping %d of %d warmup images (TF Serving's limit)", MAX_WARMUP_RECORDS, len(images))
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


def _jsonable(value):
    """numpy scalars and arrays, paths and the like as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def facts(labels: list[str], image_size: int, max_pixels: int, module_handle: str | None) -> dict:
    """What export_info.json always records: versions, input contract, labels, signatures."""
    return {
        "tensorflow_version": tf.__version__,
        "serve_with": f"TF Serving >= {tf.__version__}",
        "module_handle": module_handle,
        "image_size": image_size, "labels": list(labels), "max_pixels": max_pixels,
        "preprocess_version": PREPROCESS_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "signatures": {BYTES_SIGNATURE: f"{BYTES_INPUT}: string [N] -> scores [N, K], classes [N, K]",
                       IMAGES_SIGNATURE: f"images: float32 [N, {image_size}, {image_size}, 3] in [0, 1] -> scores",
                       CLASSIFY_SIGNATURE: f"inputs: serialized tf.train.Example with {EXAMPLE_FEATURE}"},
    }


def write(version_dir: Path, record: dict, warmups: list[bytes]) -> None:
    """assets.extra/: labels.txt (record["labels"]), export_info.json (record) and the warmup file."""
    extra = version_dir / "assets.extra"
    extra.mkdir()
    (extra / "labels.txt").write_text("".join(f"{label}\n" for label in record["labels"]), encoding="utf-8")
    text = json.dumps(record, indent=2, ensure_ascii=False, default=_jsonable)
    (extra / "export_info.json").write_text(text + "\n", encoding="utf-8")
    _write_warmup(extra / WARMUP_FILE, warmups)
