"""The exported serving_images signature -> a LiteRT (TFLite) flatbuffer, and scores from one.

Only serving_images converts: it takes float pixels, so it holds no decode, string or TensorList
ops. The converted model keeps float32 input and output for every kind, so callers feed the same
[N, H, W, 3] pixels in [0, 1] as to the SavedModel.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.core.protobuf import saved_model_pb2

from retrain import fs, native, stop
from retrain.config import TFLITE_KINDS
from retrain.errors import RetrainError
from retrain.export.assets import IMAGES_SIGNATURE

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


def export_tflite(saved_model_dir: Path, out_path: Path, kind: str, calibration: np.ndarray | None) -> Path:
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
    log.info("converting to a %s TFLite model (takes seconds)", kind)
    flatbuffer = converter.convert()
    fs.write_atomic(Path(out_path), flatbuffer)
    log.debug("wrote %s (%.1f MB) in %.1f s", out_path, len(flatbuffer) / 1e6, time.perf_counter() - started)
    return Path(out_path)


def tflite_scores(tflite_path: Path, images: np.ndarray) -> np.ndarray:
    """Scores float32 [N, K] for images float32 [N, H, W, 3] in [0, 1] (N may be 0)."""
    with native.quiet():
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
INFO_FILE = "tflite_info.json"  # beside model.tflite; not export_info.json, which is the SavedModel's


def _decoded(paths: list[Path], image_size: int, max_pixels: int):
    """(float32 [<=_BATCH, S, S, 3], indices into paths) batches, decoded exactly as for training."""
    from retrain.images.decoding import Decoder

    decode, skipped = Decoder(image_size, max_pixels), []
    for start in range(0, len(paths), _BATCH):
        images, good = decode(paths[start:start + _BATCH], skipped)
        yield images, [start + i for i in good]


def _info(kind: str, image_size: int) -> dict:
    return {"model": "model.tflite", "signature": IMAGES_SIGNATURE, "kind": kind,
            "input": {"name": "images", "shape": [-1, image_size, image_size, 3], "dtype": "float32",
                      "normalisation": "RGB in [0, 1]: pixel / 255 (uint16: / 65535), gray copied to RGB, "
                                       "alpha composited on white, antialiased bilinear resize (e.g. Pillow BILINEAR)"},
            "output": {"name": "scores", "dtype": "float32", "labels": "labels.txt, same order"}}


def export_checked(saved_model_dir: Path, run_dir: Path, kind: str, *, train_paths: list[Path],
                   val_paths: list[Path], val_labels: list[int], image_size: int, max_pixels: int,
                   max_drop: float) -> dict:
    """Write run_dir/model.tflite from the SavedModel and compare both on the given held-out images
    (val_paths: the test split, else validation).

    Returns {"kind", "tflite_accuracy", "saved_model_accuracy", "drop_points", "images", "changed_answers"}
    (accuracies in [0, 1]; changed_answers: images whose top label differs between the two),
    also written with the input contract to run_dir/tflite_info.json. Raises RetrainError with exit
    code 3 when the TFLite accuracy is more than max_drop points lower; the file is kept for inspection.
    """
    out_path = Path(run_dir) / "model.tflite"
    calibration = None
    if kind == "int8":
        step = max(1, len(train_paths) // CALIBRATION_IMAGES)
        calibration = np.concatenate([images for images, _ in _decoded(
            train_paths[::step][:CALIBRATION_IMAGES], image_size, max_pixels)])
    export_tflite(saved_model_dir, out_path, kind, calibration)
    stop.check()
    serve = tf.saved_model.load(str(saved_model_dir)).signatures[IMAGES_SIGNATURE]
    hits_saved = hits_lite = changed = count = 0
    labels = np.asarray(val_labels)
    for images, rows in _decoded(val_paths, image_size, max_pixels):
        truth, count = labels[rows], count + len(rows)
        saved_answer = serve(images=tf.constant(images))["scores"].numpy().argmax(1)
        lite_answer = tflite_scores(out_path, images).argmax(1)
        hits_saved += int(np.sum(saved_answer == truth))
        hits_lite += int(np.sum(lite_answer == truth))
        changed += int(np.sum(saved_answer != lite_answer))
    saved_acc, lite_acc = hits_saved / max(count, 1), hits_lite / max(count, 1)
    report = {"kind": kind, "tflite_accuracy": lite_acc, "saved_model_accuracy": saved_acc,
              "drop_points": round(100 * (saved_acc - lite_acc), 3), "images": count, "changed_answers": changed}
    log.info("TFLite %s: %d of %d images changed their answer (accuracy %.3f against %.3f)", kind, changed, count,
             lite_acc, saved_acc)
    fs.write_atomic(Path(run_dir) / INFO_FILE, json.dumps(_info(kind, image_size) | {"check": report}, indent=2) + "\n")
    if report["drop_points"] > max_drop:
        raise RetrainError(f"--max-export-drop: the {kind} TFLite model {out_path} lost {report['drop_points']:.2f} "
                           f"accuracy points; expected at most {max_drop:g} (file kept for inspection)", exit_code=3)
    return report
