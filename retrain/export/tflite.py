"""The exported serving_images signature -> a LiteRT (TFLite) flatbuffer with metadata, and scores from one.

Only serving_images converts: it takes float pixels, so it holds no decode, string or TensorList
ops. float32, float16 and int8 keep float32 input and output, so callers feed the same [N, H, W, 3]
pixels in [0, 1] as to the SavedModel. uint8 is the full-integer file for edge accelerators (Edge TPU,
NPUs): uint8 input (the camera's bytes: the input scale is pinned to 1/255, zero point 0), uint8 output
(probability = byte / 256) and a fixed batch of 1, since their compilers refuse dynamic shapes. In both
quantised kinds the new layer is refitted to the quantised backbone's features (quantised_head.py).
Every file carries TFLite metadata (tflite_metadata.py): image input with mean 0 / std 255 and the
labels file, so MediaPipe's ImageClassifier and the TFLite Task Library open it given only its path.
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from retrain import fs, native, stop, version
from retrain.config import TFLITE_KINDS
from retrain.errors import RetrainError
from retrain.export import litert, parity, quantised_head, tflite_metadata
from retrain.export.assets import IMAGES_SIGNATURE

log = logging.getLogger(__name__)

QUANTISED = ("int8", "uint8")  # the kinds calibrated on training images


def _check_calibration(calibration, image_size: int) -> np.ndarray:
    images = np.asarray(calibration, dtype=np.float32) if calibration is not None else np.zeros((0,))
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[1:] != (image_size, image_size, 3):
        raise RetrainError(f"int8/uint8 calibration images: found shape {images.shape}, "
                           f"expected [M >= 1, {image_size}, {image_size}, 3] float32 in [0, 1]")
    return images


def _image_size(saved_model_dir: Path) -> int:
    """H of the serving_images input, read from saved_model.pb without loading the weights."""
    saved_model = saved_model_pb2.SavedModel.FromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    signature = saved_model.meta_graphs[0].signature_def.get(IMAGES_SIGNATURE)
    if signature is None:
        raise RetrainError(f"{saved_model_dir}: found no {IMAGES_SIGNATURE} signature, expected a retrain export")
    return int(signature.inputs["images"].tensor_shape.dim[1].size)


def _labels(saved_model_dir: Path) -> list[str]:
    return json.loads((Path(saved_model_dir) / "assets.extra" / "export_info.json").read_text("utf-8"))["labels"]


def _batch_one(saved_model_dir: Path, image_size: int, workdir: Path) -> Path:
    """A SavedModel whose serving_images takes exactly [1, S, S, 3] (what the TFLite converter saves
    internally for a concrete function anyway, but there under the name serving_default)."""
    loaded = tf.saved_model.load(str(saved_model_dir))
    serve = loaded.signatures[IMAGES_SIGNATURE]
    fixed = tf.function(lambda images: serve(images=images)).get_concrete_function(
        tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name="images"))
    tf.saved_model.save(loaded, str(workdir / "batch1"), signatures={IMAGES_SIGNATURE: fixed})
    return workdir / "batch1"


def _converter(saved_model_dir: Path, kind: str, calibration, image_size: int, workdir: Path):
    source = _batch_one(saved_model_dir, image_size, workdir) if kind == "uint8" else saved_model_dir
    converter = tf.lite.TFLiteConverter.from_saved_model(str(source), signature_keys=[IMAGES_SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if kind == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind in QUANTISED:
        images = _check_calibration(calibration, image_size)
        if kind == "uint8":
            # A black and a white frame pin the input range to exactly [0, 1], so the input's uint8 scale is
            # 1/255 with zero point 0: a camera byte is then the quantised pixel with no arithmetic.
            images = np.concatenate([images, np.zeros_like(images[:1]), np.ones_like(images[:1])])
            converter.inference_input_type = converter.inference_output_type = tf.uint8
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[np.newaxis]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def export_tflite(saved_model_dir: Path, out_path: Path, kind: str, calibration: np.ndarray | None,
                  distil: Iterable[tuple[np.ndarray, np.ndarray]] = ()) -> Path:
    """Convert the serving_images signature of saved_model_dir; write out_path atomically; return it.

    kind: float32 (same numbers), float16 (weights halved in size, computed in float32 on CPU),
    int8 (weights and activations, calibrated on `calibration`: float32 [M, H, W, 3] in [0, 1]) or
    uint8 (int8 inside, uint8 input and output, batch 1; same calibration). For int8 and uint8, `distil`
    (batches of images float32 [n, H, W, 3] in [0, 1] with the SavedModel's scores [n, K] for them)
    refits the new layer to the quantised backbone's features (quantised_head.py); empty: not refitted.
    Only TFLITE_BUILTINS ops are allowed: a conversion needing Select TF ops fails here, as a
    RetrainError naming the converter's first line; nothing else is touched then.
    """
    if kind not in TFLITE_KINDS:
        raise RetrainError(f"--tflite: found {kind!r}, expected one of {', '.join(TFLITE_KINDS)}")
    started = time.perf_counter()
    image_size = _image_size(saved_model_dir)
    log.info("converting the SavedModel to TFLite, %s (takes seconds)", kind)
    with tempfile.TemporaryDirectory(prefix=".tflite-", dir=Path(out_path).parent) as workdir:
        try:
            converter = _converter(saved_model_dir, kind, calibration, image_size, Path(workdir))
            with native.quiet():  # the quantiser prints "fully_quantize: 0, inference_type: 6, ..."; errors raise
                flatbuffer = converter.convert()
        except RetrainError:  # bad calibration images: already one line about the user's input
            raise
        except Exception as e:  # ConverterError (an Exception of its own), ValueError, RuntimeError, ...
            # The converter's message is pages of MLIR; the op list is the part a user can act on.
            select = re.search(r"TF Select ops: (.+)", str(e))
            reason = f"ops with no LiteRT builtin: {select.group(1).strip()}" if select else parity.first_line(e)
            raise RetrainError(f"--tflite {kind}: the TFLite converter failed on {saved_model_dir}: {reason}; "
                               "the SavedModel is kept") from e
    if kind in QUANTISED and distil:  # () by default: the converter's file as it is
        flatbuffer = quantised_head.refit(flatbuffer, distil)
    labels = _labels(saved_model_dir)
    info = tflite_metadata.ClassifierInfo(
        name="retrain image classifier",
        description=f"Classifies an RGB image into one of {len(labels)} labels ({kind} TFLite model, "
                    f"converted from {Path(saved_model_dir).name} by retrain {version.__version__})",
        version=Path(saved_model_dir).name, image_size=image_size, labels=labels)
    fs.write_atomic(Path(out_path), tflite_metadata.attach(flatbuffer, info))
    log.debug("wrote %s (%.1f MB) in %.1f s", out_path, len(flatbuffer) / 1e6, time.perf_counter() - started)
    return Path(out_path)


def tflite_scores(tflite_path: Path, images: np.ndarray) -> np.ndarray:
    """Scores float32 [N, K] of the file at tflite_path, of any kind, for images float32 [N, H, W, 3] in
    [0, 1] (N may be 0)."""
    return litert.outputs(Path(tflite_path), images)["scores"]


CALIBRATION_IMAGES = 100  # int8 calibration: enough for stable activation ranges, small in memory
# Refitting the quantised file's new layer: the SavedModel and the file each answer these once (11-16 s
# more for 908 small images on 2 cores); more than the calibration's 100, since they teach 1,280 x K weights.
DISTIL_IMAGES = 1_000
INFO_FILE = "tflite_info.json"  # beside model.tflite; not export_info.json, which is the SavedModel's


def _info(kind: str, image_size: int) -> dict:
    batch = 1 if kind == "uint8" else -1
    pixels = ("uint8 RGB bytes 0-255 as they come from the camera (quantisation scale 1/255, zero point 0)"
              if kind == "uint8" else "RGB in [0, 1]: pixel / 255 (uint16: / 65535)")
    scores = "uint8: probability = value / 256" if kind == "uint8" else "float32 probabilities"
    info = {"model": "model.tflite", "signature": IMAGES_SIGNATURE, "kind": kind,
            "input": {"name": "images", "shape": [batch, image_size, image_size, 3],
                      "dtype": "uint8" if kind == "uint8" else "float32",
                      "normalisation": f"{pixels}, gray copied to RGB, alpha composited on white, "
                                       "antialiased bilinear resize"},
            "output": {"name": "scores", "dtype": "uint8" if kind == "uint8" else "float32", "scores": scores,
                       "labels": "labels.txt, same order (also inside model.tflite as TFLite metadata)"},
            "metadata": {"normalisation": {"mean": 0, "std": 255}, "labels_file": "labels.txt",
                         "min_parser_version": tflite_metadata.MIN_PARSER_VERSION}}
    if kind in QUANTISED:
        info["output"]["last_layer"] = (f"refitted to this file's own quantised features of up to {DISTIL_IMAGES} "
                                        "training images, to give the SavedModel's scores on them")
    return info


def _spread(paths: list[Path], count: int) -> list[Path]:
    """At most count of paths, evenly spaced, so every class is in (the training list is by class)."""
    return paths[::max(1, len(paths) // count)][:count]


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
    calibration, distil = None, ()
    if kind in QUANTISED:
        calibration = np.concatenate([images for images, _ in parity.decoded(
            _spread(train_paths, CALIBRATION_IMAGES), image_size, max_pixels)])
        distil = ((images, scores) for images, scores, _ in parity.answered(
            saved_model_dir, _spread(train_paths, DISTIL_IMAGES), image_size, max_pixels))
    export_tflite(saved_model_dir, out_path, kind, calibration, distil)
    stop.check()
    check = parity.compare(saved_model_dir, lambda images: tflite_scores(out_path, images), val_paths, val_labels,
                           image_size, max_pixels)
    report = {"kind": kind, "tflite_accuracy": check.pop("accuracy"), **check}
    fs.write_atomic(Path(run_dir) / INFO_FILE, json.dumps(_info(kind, image_size) | {"check": report}, indent=2) + "\n")
    parity.within_drop(f"{kind} TFLite model", out_path, report, report["tflite_accuracy"], max_drop)
    return report
