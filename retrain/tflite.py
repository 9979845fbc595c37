"""The exported serving_images signature -> a LiteRT (TFLite) flatbuffer, and scores from one.

Only serving_images converts: it takes float pixels, so it holds no decode, string or TensorList
ops. The converted model keeps float32 input and output for every kind, so callers feed the same
[N, H, W, 3] pixels in [0, 1] as to the SavedModel.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.core.protobuf import saved_model_pb2

from retrain.config import TFLITE_KINDS
from retrain.errors import RetrainError
from retrain.export import IMAGES_SIGNATURE

log = logging.getLogger(__name__)

_BATCH = 64  # images per interpreter call: bounds memory on large sets


def _check_calibration(calibration, image_size: int) -> np.ndarray:
    images = np.asarray(calibration, dtype=np.float32) if calibration is not None else np.zeros((0,))
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[1:] != (image_size, image_size, 3):
        raise RetrainError(f"int8 calibration images: found shape {images.shape}, "
                           f"expected [M >= 1, {image_size}, {image_size}, 3] float32 in [0, 1]")
    return images


def _image_size(saved_model_dir: Path) -> int:
    """H of the serving_images input, read from saved_model.pb without loading the weights."""
    saved_model = saved_model_pb2.SavedModel.FromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    signature = saved_model.meta_graphs[0].signature_def.get(IMAGES_SIGNATURE)
    if signature is None:
        raise RetrainError(f"{saved_model_dir}: found no {IMAGES_SIGNATURE} signature, expected a retrain export")
    return int(signature.inputs["images"].tensor_shape.dim[1].size)


def export_tflite(saved_model_dir: Path, out_path: Path, kind: str, calibration: "np.ndarray | None") -> Path:
    """Convert the serving_images signature of saved_model_dir; write out_path atomically; return it.

    kind: float32 (same numbers), float16 (weights halved in size, computed in float32 on CPU) or
    int8 (weights and activations, calibrated on `calibration`: float32 [M, H, W, 3] in [0, 1]).
    Only TFLITE_BUILTINS ops are allowed: a conversion needing Select TF ops fails here.
    """
    if kind not in TFLITE_KINDS:
        raise RetrainError(f"--tflite: found {kind!r}, expected one of {', '.join(TFLITE_KINDS)}")
    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[IMAGES_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if kind == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "int8":
        images = _check_calibration(calibration, _image_size(saved_model_dir))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[np.newaxis]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    log.info("Converting %s to a %s TFLite model (takes seconds)", saved_model_dir, kind)
    flatbuffer = converter.convert()
    out_path = Path(out_path)
    staging = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    staging.write_bytes(flatbuffer)
    os.replace(staging, out_path)
    log.info("Wrote %s (%.1f MB) in %.1f s", out_path, len(flatbuffer) / 1e6, time.perf_counter() - started)
    return out_path


def tflite_scores(tflite_path: Path, images: "np.ndarray") -> "np.ndarray":
    """Scores float32 [N, K] for images float32 [N, H, W, 3] in [0, 1] (N may be 0)."""
    interpreter = Interpreter(model_path=str(tflite_path), num_threads=os.cpu_count() or 1)
    runner = interpreter.get_signature_runner(IMAGES_SIGNATURE)
    expected = runner.get_input_details()["images"]["shape_signature"]
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(expected[1:]):
        raise RetrainError(f"images: found shape {images.shape}, expected [N, {', '.join(map(str, expected[1:]))}]")
    classes = int(runner.get_output_details()["scores"]["shape"][-1])
    chunks = [np.array(runner(images=images[i:i + _BATCH])["scores"]) for i in range(0, len(images), _BATCH)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, classes), np.float32)


CALIBRATION_IMAGES = 100  # int8 calibration: enough for stable activation ranges, small in memory


def _decoded(paths: list[Path], image_size: int, max_pixels: int):
    """float32 [<=_BATCH, S, S, 3] batches of the files, decoded exactly as for training."""
    from retrain import preprocess

    for start in range(0, len(paths), _BATCH):
        batch = tf.constant([Path(p).read_bytes() for p in paths[start:start + _BATCH]])
        yield preprocess.decode_batch(batch, image_size, max_pixels).numpy()


def export_checked(saved_model_dir: Path, out_path: Path, kind: str, *, train_paths: list[Path],
                   val_paths: list[Path], val_labels: list[int], image_size: int, max_pixels: int,
                   max_drop: float) -> dict:
    """Write out_path from the SavedModel, then compare both on the validation images.

    Returns {"kind", "tflite_accuracy", "saved_model_accuracy", "drop_points"} (accuracies in [0, 1]).
    Raises RetrainError with exit code 3 when the TFLite accuracy is more than max_drop points lower;
    the file is kept for inspection.
    """
    calibration = None
    if kind == "int8":
        step = max(1, len(train_paths) // CALIBRATION_IMAGES)
        calibration = np.concatenate(list(_decoded(train_paths[::step][:CALIBRATION_IMAGES], image_size, max_pixels)))
    export_tflite(saved_model_dir, out_path, kind, calibration)
    serve = tf.saved_model.load(str(saved_model_dir)).signatures[IMAGES_SIGNATURE]
    hits_saved = hits_lite = 0
    labels = np.asarray(val_labels)
    for start, images in zip(range(0, len(val_paths), _BATCH), _decoded(val_paths, image_size, max_pixels)):
        truth = labels[start:start + len(images)]
        hits_saved += int(np.sum(serve(images=tf.constant(images))["scores"].numpy().argmax(1) == truth))
        hits_lite += int(np.sum(tflite_scores(out_path, images).argmax(1) == truth))
    saved_acc, lite_acc = hits_saved / len(val_paths), hits_lite / len(val_paths)
    report = {"kind": kind, "tflite_accuracy": lite_acc, "saved_model_accuracy": saved_acc,
              "drop_points": round(100 * (saved_acc - lite_acc), 3)}
    log.info("TFLite %s accuracy %.4f vs SavedModel %.4f on %d validation images", kind, lite_acc, saved_acc,
             len(val_paths))
    if report["drop_points"] > max_drop:
        raise RetrainError(f"--max-export-drop: the {kind} TFLite model {out_path} lost {report['drop_points']:.2f} "
                           f"accuracy points; expected at most {max_drop:g} (file kept for inspection)", exit_code=3)
    return report
