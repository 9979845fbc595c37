"""Exported feature-vector modules: load in hub.KerasLayer frozen and trainable, give the features of the
backbone they came from, let gradients through, keep Lite0's blocks, and are never written over."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrain.backbone import lite0, resolve, trainable
from retrain.errors import RetrainError

IMAGES = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)


def hub_layer(path, train: bool):
    import tensorflow_hub as hub

    return hub.KerasLayer(str(path), trainable=train)


@pytest.fixture(scope="module")
def exported_fake(fake_module, tmp_path_factory) -> Path:
    return trainable.export_module(trainable.load(fake_module), 32, tmp_path_factory.mktemp("export") / "fake")


def test_an_opaque_module_loads_as_itself(fake_module):
    assert trainable.block_count(trainable.load(fake_module)) is None


def test_export_gives_the_source_features_frozen_and_trainable(fake_module, exported_fake):
    import tensorflow as tf

    source = tf.saved_model.load(str(fake_module))(IMAGES).numpy()
    for train in (False, True):
        layer = hub_layer(exported_fake, train)
        assert np.allclose(layer(IMAGES).numpy(), source, atol=1e-6)
        assert len(layer.trainable_weights) == (2 if train else 0)


def test_gradients_flow_into_a_trainable_export(exported_fake):
    import tensorflow as tf

    layer = hub_layer(exported_fake, True)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(IMAGES, training=False) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_the_export_is_a_different_module_for_the_feature_cache(fake_module, exported_fake):
    assert resolve.fingerprint(exported_fake) != resolve.fingerprint(fake_module)
    assert resolve.load_info(str(exported_fake)).feature_dim == 8


def test_an_existing_folder_is_refused_and_left_alone(fake_module, tmp_path):
    target = tmp_path / "module"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(RetrainError, match="already exists"):
        trainable.export_module(trainable.load(fake_module), 32, target)
    assert (target / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["module"]  # no partial folder left beside it


@pytest.mark.slow
def test_retrain_runs_on_an_exported_module(exported_fake, colour_images, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "retrain", "--images", str(colour_images), "--module",
                           str(exported_fake), "--output", str(tmp_path / "out"), "--image-size", "32",
                           "--epochs", "30"], check=False, capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "saved_model" / "1" / "saved_model.pb").is_file()


@pytest.fixture(scope="module")
def lite0_export(tmp_path_factory):
    path = resolve.resolve("efficientnet_lite0")
    return path, trainable.export_module(trainable.load(path), 224, tmp_path_factory.mktemp("lite0") / "module")


@pytest.mark.slow
def test_a_lite0_export_keeps_blocks_and_features(lite0_export):
    import tensorflow as tf

    source, exported = lite0_export
    again = trainable.load(exported)
    assert isinstance(again, lite0.Lite0) and trainable.block_count(again) == 16
    images = np.random.default_rng(1).uniform(size=(2, 224, 224, 3)).astype(np.float32)
    expected = tf.saved_model.load(source)(images).numpy()
    assert np.allclose(hub_layer(exported, False)(images).numpy(), expected, atol=1e-5)
    assert not hasattr(tf.saved_model.load(str(exported)), "imagenet_logits")  # no classification layer


@pytest.mark.slow
def test_a_trainable_lite0_export_honours_training_only_when_asked(lite0_export):
    import tensorflow as tf

    _, exported = lite0_export
    layer = hub_layer(exported, True)
    images = np.random.default_rng(2).uniform(size=(4, 224, 224, 3)).astype(np.float32)
    moving = next(w for w in layer.weights if "moving_mean" in w.name)
    before = moving.numpy()
    frozen_mode = layer(images, training=False)  # batch norm in inference mode: statistics untouched
    assert np.array_equal(moving.numpy(), before)
    assert not np.allclose(layer(images, training=True).numpy(), frozen_mode.numpy(), atol=1e-3)
    assert not np.array_equal(moving.numpy(), before)  # training=True is what fine-tuning must avoid
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(images, training=False))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 147 and all(g is not None for g in grads)
