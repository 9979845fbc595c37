"""--onnx: the serving_images signature as an ONNX model (onnxruntime on servers, onnxruntime-web in
browsers), converted with tf2onnx and checked with onnxruntime against the SavedModel.

The ONNX model takes what serving_images takes: "images", float32 [batch, H, W, 3], RGB in [0, 1]; its
first output "scores" holds float32 [batch, K] probabilities in the order of labels.txt, which is
written beside it. Needs the onnx extra (pip install 'retrain[onnx]').
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from retrain import fs, stop
from retrain.config import missing_onnx_extra
from retrain.errors import RetrainError
from retrain.export import parity
from retrain.export.assets import IMAGES_SIGNATURE

log = logging.getLogger(__name__)

OPSET = 17  # ONNX opset: onnxruntime 1.16+ and onnxruntime-web run it
INFO_FILE = "onnx_info.json"


def export_onnx(saved_model_dir: Path, out_path: Path) -> Path:
    """Convert serving_images of saved_model_dir to out_path (written atomically); returns out_path.

    The batch dimension is named "batch"; a converter failure is a RetrainError naming its first line.
    """
    missing_onnx_extra()
    import onnx
    import tensorflow as tf
    import tf2onnx

    started = time.perf_counter()
    log.info("converting the SavedModel to ONNX (takes seconds)")
    loaded = tf.saved_model.load(str(saved_model_dir))  # held: the signature needs its variables alive
    serve = loaded.signatures[IMAGES_SIGNATURE]
    spec = serve.structured_input_signature[1]["images"]
    try:
        model, _ = tf2onnx.convert.from_function(
            tf.function(lambda images: serve(images=images)), opset=OPSET,
            input_signature=[tf.TensorSpec(spec.shape, tf.float32, name="images")])
        for value in [*model.graph.input, *model.graph.output]:
            if value.type.tensor_type.shape.dim:
                value.type.tensor_type.shape.dim[0].dim_param = "batch"
        # tf2onnx also writes models that onnxruntime cannot run (ops missing from the opset): only a
        # model that opens is a conversion.
        open_session(model.SerializeToString())
    except Exception as e:  # tf2onnx and onnxruntime raise many kinds: all mean "did not convert"
        raise RetrainError(f"--onnx: tf2onnx {tf2onnx.__version__} failed on {saved_model_dir}: "
                           f"{parity.first_line(e)}; the SavedModel is kept") from e
    labels = json.loads((Path(saved_model_dir) / "assets.extra" / "export_info.json").read_text("utf-8"))["labels"]
    model.doc_string = f"retrain image classifier: images float32 [batch, H, W, 3] RGB in [0, 1] -> scores " \
                       f"[batch, {len(labels)}] in the order of labels.txt"
    onnx.helper.set_model_props(model, {"labels": json.dumps(labels, ensure_ascii=False)})
    fs.write_atomic(Path(out_path), model.SerializeToString())
    log.debug("wrote %s in %.1f s", out_path, time.perf_counter() - started)
    return Path(out_path)


def open_session(model: Path | bytes):
    """An onnxruntime CPU session on a .onnx file (or its bytes), one thread per core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3  # errors only: its warnings about old opsets would read as ours
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_scores(onnx_path_or_session, images: np.ndarray) -> np.ndarray:
    """Scores float32 [N, K] from onnxruntime (CPU) for images float32 [N, H, W, 3] in [0, 1]."""
    session = onnx_path_or_session
    if isinstance(session, (str, Path)):
        session = open_session(Path(session))
    chunks = [session.run(None, {"images": np.asarray(images[i:i + parity.BATCH], np.float32)})[0]
              for i in range(0, len(images), parity.BATCH)]
    classes = session.get_outputs()[0].shape[-1]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, classes), np.float32)


def export_checked(saved_model_dir: Path, run_dir: Path, *, val_paths: list[Path], val_labels: list[int],
                   image_size: int, max_pixels: int, max_drop: float) -> dict:
    """Write run_dir/model.onnx and compare it with the SavedModel on the judged images.

    Returns {"onnx_accuracy", "saved_model_accuracy", "drop_points", "images", "changed_answers"}, also
    written to run_dir/onnx_info.json. Raises RetrainError with exit code 3 when the drop exceeds max_drop
    points (the file is kept for inspection).
    """
    out_path = Path(run_dir) / "model.onnx"
    export_onnx(saved_model_dir, out_path)
    stop.check()
    runtime = open_session(out_path)
    check = parity.compare(saved_model_dir, lambda images: onnx_scores(runtime, images), val_paths, val_labels,
                           image_size, max_pixels)
    report = {"onnx_accuracy": check.pop("accuracy"), **check}
    info = {"model": "model.onnx", "opset": OPSET,
            "input": {"name": "images", "shape": ["batch", image_size, image_size, 3], "dtype": "float32",
                      "normalisation": "RGB in [0, 1]: pixel / 255"},
            "output": {"name": "scores", "dtype": "float32", "labels": "labels.txt, same order"}, "check": report}
    fs.write_atomic(Path(run_dir) / INFO_FILE, json.dumps(info, indent=2) + "\n")
    parity.within_drop("ONNX model", out_path, report, report["onnx_accuracy"], max_drop)
    return report
