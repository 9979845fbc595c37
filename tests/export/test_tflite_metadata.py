"""TFLite metadata: what MediaPipe's ImageClassifier needs to open model.tflite as-is (labels, normalisation),
for every --tflite kind, checked with MediaPipe itself in a process of its own."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from on_device import classify_with_mediapipe
from retrain.errors import RetrainError
from retrain.export import tflite_metadata
from retrain.export.tflite import export_tflite, tflite_scores
from serving_fixture import IMAGE_SIZE, LABELS, solid_images


def probe_images(count: int = 40, seed: int = 0) -> np.ndarray:
    """uint8 [count + 4, S, S, 3]: the solid probe colours, then random solid colours and noise."""
    rng = np.random.default_rng(seed)
    solid = np.round(solid_images() * 255).astype(np.uint8)
    colours = rng.integers(0, 256, (count // 2, 1, 1, 3)).astype(np.uint8)
    flat = np.broadcast_to(colours, (count // 2, IMAGE_SIZE, IMAGE_SIZE, 3))
    noise = rng.integers(0, 256, (count - count // 2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.uint8)
    return np.concatenate([solid, flat, noise])


@pytest.fixture(scope="module")
def loaded(serving_export):
    return tf.saved_model.load(str(serving_export.version_dir))


@pytest.fixture(scope="module")
def float32_model(serving_export, tmp_path_factory) -> Path:
    return export_tflite(serving_export.version_dir, tmp_path_factory.mktemp("meta") / "model.tflite", "float32",
                         None)


def test_metadata_and_labels_travel_inside_the_model(float32_model):
    metadata, files = tflite_metadata.read(float32_model.read_bytes())
    assert metadata[4:8] == tflite_metadata.FILE_IDENTIFIER
    assert files == {"labels.txt": "".join(f"{label}\n" for label in LABELS).encode("utf-8")}
    assert tflite_metadata.MIN_PARSER_VERSION.encode() in metadata
    with pytest.raises(ValueError, match="already"):
        tflite_metadata.attach(float32_model.read_bytes(), tflite_metadata.ClassifierInfo(
            "m", "d", "1", IMAGE_SIZE, LABELS))


def test_attaching_metadata_changes_no_score(serving_export, float32_model, tmp_path):
    """The interpreter reads the repacked flatbuffer (zip tail included) to the same numbers."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(serving_export.version_dir),
                                                         signature_keys=["serving_images"])
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(converter.convert())
    images = probe_images().astype(np.float32) / 255
    np.testing.assert_array_equal(tflite_scores(bare, images), tflite_scores(float32_model, images))


def test_mediapipe_opens_float32_as_is_and_agrees_with_the_saved_model(serving_export, loaded, float32_model,
                                                                         tmp_path):
    images = probe_images()
    [answer] = classify_with_mediapipe([float32_model], images, tmp_path)
    assert answer["names"] == LABELS
    expected = loaded.signatures["serving_images"](images=tf.constant(images / np.float32(255)))["scores"].numpy()
    np.testing.assert_allclose(np.array(answer["scores"]), expected, atol=1e-4)


@pytest.mark.slow
def test_mediapipe_opens_every_kind_and_reads_it_like_our_interpreter(serving_export, tmp_path):
    """float16 and the quantised kinds: MediaPipe feeds camera bytes (uint8: unchanged) and reads the same
    scores as tflite_scores, so the --max-export-drop check of the run holds for what MediaPipe answers."""
    images = probe_images()
    calibration = images.astype(np.float32) / 255
    kinds = {"float16": 1e-5, "int8": 1 / 256 + 1e-6, "uint8": 1 / 256 + 1e-6}
    models = [export_tflite(serving_export.version_dir, tmp_path / f"{kind}.tflite", kind, calibration)
              for kind in kinds]
    for (kind, atol), model, answer in zip(kinds.items(), models, classify_with_mediapipe(models, images, tmp_path)):
        assert answer["names"] == LABELS, kind
        np.testing.assert_allclose(np.array(answer["scores"]), tflite_scores(model, calibration), atol=atol,
                                   err_msg=kind)


def test_uint8_takes_camera_bytes_at_batch_one(serving_export, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = export_tflite(serving_export.version_dir, tmp_path / "model.tflite", "uint8",
                          probe_images().astype(np.float32) / 255)
    runner = Interpreter(model_path=str(model)).get_signature_runner("serving_images")
    source, target = runner.get_input_details()["images"], runner.get_output_details()["scores"]
    assert list(source["shape_signature"]) == [1, IMAGE_SIZE, IMAGE_SIZE, 3] and source["dtype"] == np.uint8
    assert source["quantization"] == (pytest.approx(1 / 255), 0) and target["dtype"] == np.uint8
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_a_failing_converter_is_one_line_and_writes_nothing(tmp_path):
    """A signature with an op LiteRT has no builtin for (MatrixInverse): the converter's own failure."""
    class Inverting(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def serve(self, images):
            pooled = tf.reduce_mean(images, axis=[1, 2])
            gram = tf.matmul(pooled, pooled, transpose_a=True) + tf.eye(3)
            return {"scores": tf.nn.softmax(tf.matmul(pooled, tf.linalg.inv(gram)))}

    module = Inverting()
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures={"serving_images": module.serve})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RetrainError, match=r"^--tflite float32: the TFLite converter failed on .*; the SavedModel "
                                           r"is kept$") as caught:
        export_tflite(tmp_path / "saved", out / "model.tflite", "float32", None)
    assert "ops with no LiteRT builtin: MatrixInverse" in str(caught.value) and "\n" not in str(caught.value)
    assert list(out.iterdir()) == []
