"""The bundled module end to end on the bundled data/fashion: MediaPipe's ImageClassifier (float32 and
float16 model.tflite) and onnxruntime (model.onnx) agree with the SavedModel on >= 99 % of the judged
split's images given at the model's input size. Slow (the real EfficientNet-Lite0): one run serves all."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from on_device import classify_with_mediapipe, judged_frames
from retrain.cli import main
from retrain.export.tflite import export_tflite

DATA = Path(__file__).resolve().parents[2] / "data" / "fashion"
pytestmark = pytest.mark.slow


def test_bundled_module_files_answer_like_the_saved_model_on_phones_and_servers(tmp_path):
    onnx_export = pytest.importorskip("retrain.export.onnx_export")
    pytest.importorskip("tf2onnx", reason="needs the onnx extra (pip install 'retrain[onnx]')")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--images", str(DATA), "--output", str(out), "--tflite", "float16", "--onnx"])
    assert result.exit_code == 0, result.output
    run_dir, saved = out / "runs" / "1", out / "saved_model" / "1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for check in (metrics["tflite"], metrics["onnx"]):
        assert check["images"] >= 20 and check["changed_answers"] <= 0.01 * check["images"], check

    labels = (run_dir / "labels.txt").read_text().splitlines()
    frames, _ = judged_frames(run_dir, DATA, metrics["image_size"])
    pixels = frames.astype(np.float32) / 255
    loaded = tf.saved_model.load(str(saved))
    expected = loaded.signatures["serving_images"](images=tf.constant(pixels))["scores"].numpy().argmax(1)

    float32 = export_tflite(saved, tmp_path / "float32.tflite", "float32", None)
    for name, answer in zip(("float16", "float32"), classify_with_mediapipe([run_dir / "model.tflite", float32],
                                                                            frames, tmp_path)):
        assert answer["names"] == labels, name
        agreement = np.mean(np.array(answer["scores"]).argmax(1) == expected)
        assert agreement >= 0.99, (name, agreement)
    agreement = np.mean(onnx_export.onnx_scores(run_dir / "model.onnx", pixels).argmax(1) == expected)
    assert agreement >= 0.99, agreement
