"""The int8 file's new layer refitted to its own quantised features (retrain/export/quantised_head.py)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from retrain.export import quantised_head
from retrain.export.tflite import export_tflite, tflite_scores
from serving_fixture import IMAGE_SIZE, LABELS, solid_images


def _colours(count: int, seed: int) -> np.ndarray:
    """float32 [count, S, S, 3] in [0, 1]: random solid colours with a little pixel noise."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(count, 1, 1, 3)) + rng.normal(scale=0.05, size=(count, IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(images, 0, 1).astype(np.float32)


def _unpacked(path):
    data = path.read_bytes()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


@pytest.fixture(scope="module")
def serve(serving_export):
    loaded = tf.saved_model.load(str(serving_export.version_dir))
    return lambda images: loaded.signatures["serving_images"](images=tf.constant(images))["scores"].numpy()


@pytest.fixture(scope="module")
def converted(serving_export, tmp_path_factory):
    """The converter's int8 file (no refit), calibrated on random colours."""
    out = tmp_path_factory.mktemp("int8") / "model.tflite"
    return export_tflite(serving_export.version_dir, out, "int8", _colours(32, seed=1))


def test_the_head_is_the_dense_layer_feeding_the_softmax(converted, serving_export, tmp_path):
    model = _unpacked(converted)
    head = quantised_head.find_head(model)
    tensors = model.subgraphs[0].tensors
    assert head is not None and tensors[head.weights].shape[0] == len(LABELS)
    assert tensors[head.features].shape[-1] == tensors[head.weights].shape[1]
    float32 = export_tflite(serving_export.version_dir, tmp_path / "float.tflite", "float32", None)
    assert quantised_head.find_head(_unpacked(float32)) is None  # float weights: nothing to refit


def test_fit_recovers_a_softmax_layer_from_its_scores_and_is_deterministic():
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 6, size=(400, 32)).astype(np.float32)
    weights, bias = rng.normal(size=(32, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    logits = features @ weights + bias
    targets = np.exp(logits - logits.max(1, keepdims=True))
    targets /= targets.sum(1, keepdims=True)
    start = weights + np.random.default_rng(1).normal(scale=0.05, size=weights.shape).astype(np.float32)
    before = np.mean((features @ start + bias).argmax(1) == targets.argmax(1))
    fitted = quantised_head.fit(features, targets, start, bias)
    after = np.mean((features @ fitted[0] + fitted[1]).argmax(1) == targets.argmax(1))
    assert before < 0.97 and after >= 0.99, (before, after)  # 0.9625 -> 1.0
    second = quantised_head.fit(features, targets, start, bias)
    np.testing.assert_array_equal(second[0], fitted[0])
    np.testing.assert_array_equal(second[1], fitted[1])


def test_refit_writes_the_fitted_layer_back_and_nothing_else(converted, serve, monkeypatch):
    """A fit that turns the layer's classes one over: the refitted file then answers the converter's
    answers turned one over, so the int8 weights, int32 bias and output range written back are what the
    interpreter computes with. Every other tensor keeps its bytes."""
    images = _colours(96, seed=2)
    monkeypatch.setattr(quantised_head, "fit", lambda features, targets, weights, bias: (
        np.roll(weights, 1, axis=1), np.roll(bias, 1)))
    batches = [(images[:64], serve(images[:64])), (images[64:], serve(images[64:]))]
    out = converted.parent / "refitted.tflite"
    out.write_bytes(quantised_head.refit(converted.read_bytes(), iter(batches)))

    expected = (tflite_scores(converted, images).argmax(1) + 1) % len(LABELS)
    scores = tflite_scores(out, images)
    assert np.mean(scores.argmax(1) == expected) >= 0.95
    np.testing.assert_allclose(scores.sum(1), 1, atol=0.02)  # still a softmax over the labels
    monkeypatch.setattr(quantised_head, "fit", lambda features, targets, weights, bias: (
        np.zeros_like(weights), np.array([0.0, 0.0, 3.0], np.float32)))
    out.write_bytes(quantised_head.refit(converted.read_bytes(), iter(batches)))
    bias_only = np.exp([0.0, 0.0, 3.0]) / np.exp([0.0, 0.0, 3.0]).sum()  # the int32 bias at its scale
    np.testing.assert_allclose(tflite_scores(out, images), np.tile(bias_only, (len(images), 1)), atol=0.01)
    before, after = _unpacked(converted), _unpacked(out)
    head = quantised_head.find_head(before)
    changed = {before.subgraphs[0].tensors[i].buffer for i in (head.weights, head.bias) if i >= 0}
    assert len(after.buffers) - len(before.buffers) == (head.bias < 0)  # a bias the converter dropped returns
    for index, old in enumerate(before.buffers):
        new = after.buffers[index]
        same = (old.data is None and new.data is None) or (
            old.data is not None and new.data is not None and old.data.tobytes() == new.data.tobytes())
        assert same != (index in changed), index


def test_no_images_or_no_head_leave_the_file_as_it_came(converted, serving_export, tmp_path):
    original = converted.read_bytes()
    assert quantised_head.refit(original, iter([])) == original
    float32 = export_tflite(serving_export.version_dir, tmp_path / "float.tflite", "float32", None).read_bytes()
    uniform = np.full((len(solid_images()), len(LABELS)), 1 / len(LABELS), np.float32)
    assert quantised_head.refit(float32, iter([(solid_images(), uniform)])) == float32
