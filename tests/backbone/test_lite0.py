"""The bundled EfficientNet-Lite0 module: ImageNet-correct, equal to an independent NumPy port,
usable frozen and trainable through hub.KerasLayer, and built atomically."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import lite0_numpy
from retrain.backbone import lite0, lite0_weights, resolve

PICTURES = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="module")
def module_path() -> str:
    return resolve.resolve("efficientnet_lite0")  # built once per session (conftest's RETRAIN_MODULE_DIR)


@pytest.fixture(scope="module")
def pictures() -> np.ndarray:
    """float32 [4, 224, 224, 3] in [0, 1]: scikit-image's bundled photos, bilinear-resized by TensorFlow."""
    import tensorflow as tf
    from skimage import data

    return np.stack([tf.image.resize(getattr(data, name)() / 255.0, [224, 224], method="bilinear").numpy()
                     for name in PICTURES]).astype(np.float32)


@pytest.fixture(scope="module")
def loaded(module_path):
    import tensorflow as tf

    return tf.saved_model.load(module_path)


@pytest.fixture(scope="module")
def features(loaded, pictures) -> np.ndarray:
    return loaded(pictures).numpy()


@pytest.mark.slow
def test_the_imagenet_classifier_on_top_names_the_cat_and_the_espresso(loaded, features):
    import tensorflow as tf

    probabilities = tf.nn.softmax(loaded.imagenet_logits(features)).numpy()
    assert features.shape == (4, 1280)
    assert probabilities[0].argmax() == 285 and probabilities[0, 285] > 0.5  # Egyptian cat
    assert probabilities[1].argmax() == 967 and probabilities[1, 967] > 0.5  # espresso


@pytest.mark.slow
def test_features_match_an_independent_numpy_port(features, pictures):
    expected = lite0_numpy.features(pictures, lite0_weights.read_lite0_weights())
    cosine = (features * expected).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(expected, axis=1)
    assert (cosine >= 0.999).all(), dict(zip(PICTURES, cosine))


@pytest.mark.slow
def test_a_frozen_keras_layer_gives_the_same_features(module_path, pictures, features):
    import tensorflow_hub as hub

    layer = hub.KerasLayer(module_path, trainable=False)
    np.testing.assert_allclose(layer(pictures).numpy(), features, rtol=1e-4, atol=1e-4)
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 49 * 5


@pytest.mark.slow
def test_a_trainable_keras_layer_trains_and_uses_batch_statistics(module_path, pictures, features):
    import tensorflow as tf
    import tensorflow_hub as hub

    layer = hub.KerasLayer(module_path, trainable=True)
    names = [w.name for w in layer.trainable_weights]
    assert len(names) == 49 * 3 and not any("moving" in n for n in names)
    batch = tf.constant(pictures)
    np.testing.assert_allclose(layer(batch, training=False).numpy(), features, rtol=1e-4, atol=1e-4)
    with tf.GradientTape() as tape:
        trained = layer(batch, training=True)
        loss = tf.reduce_sum(trained)
    gradients = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None for g in gradients)
    assert np.abs(trained.numpy() - features).max() > 1e-2  # batch statistics, not the moving ones
    moving = [w for w in layer.non_trainable_weights if "moving_mean" in w.name][0]
    assert np.abs(moving.numpy() - lite0_weights.read_lite0_weights()["_bn0.running_mean"]).max() > 0  # updated


def _fake_save(path):
    (path / "saved_model.pb").write_bytes(b"built")


def test_an_interrupted_build_leaves_nothing_a_later_run_takes_for_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRAIN_MODULE_DIR", str(tmp_path))

    def interrupted(path):
        (path / "variables").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(lite0, "_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lite0.ensure_built()
    assert list(lite0.module_dir().parent.iterdir()) == []
    killed = lite0.module_dir().parent / ".tmp-1-dead-killed"  # what a killed process leaves behind
    (killed / "variables").mkdir(parents=True)
    os.utime(killed, (time.time() - 7200, time.time() - 7200))
    monkeypatch.setattr(lite0, "_save", _fake_save)
    assert lite0.ensure_built() == lite0.module_dir()
    assert (lite0.module_dir() / "saved_model.pb").read_bytes() == b"built" and not killed.exists()


def test_losing_the_build_race_keeps_the_winners_module(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RETRAIN_MODULE_DIR", str(tmp_path))

    def racing(path):
        _fake_save(path)
        winner = lite0.module_dir()  # another process renames its build into place first
        winner.mkdir()
        (winner / "saved_model.pb").write_bytes(b"winner")

    monkeypatch.setattr(lite0, "_save", racing)
    assert lite0.ensure_built() == lite0.module_dir()
    assert (lite0.module_dir() / "saved_model.pb").read_bytes() == b"winner"
    assert [p.name for p in lite0.module_dir().parent.iterdir()] == [lite0.module_dir().name]
