"""The single Keras import site: the frozen hub layer, the new head, and the two glued together.

`hub.KerasLayer` is a Keras 2 layer; with TensorFlow >= 2.16 it fails inside Keras 3 models
("Only instances of keras.Layer can be added to a Sequential model"), so everything is tf_keras.
"""
from __future__ import annotations

import logging

import tensorflow_hub as hub
import tf_keras

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow so a rerun gives the same weights on the same machine."""
    tf_keras.utils.set_random_seed(seed)


def build_head(feature_dim: int, num_classes: int, dropout: float) -> tf_keras.Sequential:
    """Float32 features [N, feature_dim] -> softmax scores [N, num_classes]: Dropout, then Dense."""
    return tf_keras.Sequential([
        tf_keras.Input(shape=(feature_dim,), name="features"),
        tf_keras.layers.Dropout(dropout, name="dropout"),
        tf_keras.layers.Dense(num_classes, activation="softmax", name="classifier"),
    ], name="head")


def build_classifier(module_path: str, image_size: int, head: tf_keras.Sequential) -> tf_keras.Sequential:
    """Float32 images [N, S, S, 3] in [0, 1] -> scores [N, K]: the frozen module, then the head's own layers.

    The head's layers are shared, not copied, so weights trained on cached features are the ones exported.
    """
    backbone = hub.KerasLayer(module_path, trainable=False, name="feature_vector")
    model = tf_keras.Sequential([tf_keras.Input(shape=(image_size, image_size, 3), name="images"), backbone]
                                + head.layers, name="classifier")
    log.debug("classifier: %d trainable, %d frozen weights", len(model.trainable_weights),
              len(model.non_trainable_weights))
    return model


def adam(learning_rate: float) -> tf_keras.optimizers.Optimizer:
    return tf_keras.optimizers.Adam(learning_rate)


def cross_entropy(per_example: bool = False) -> tf_keras.losses.Loss:
    """Cross-entropy of integer labels [B] against softmax scores [B, K] (weighted by sample_weight): their
    mean, or with per_example the [B] losses themselves (what tf.distribute's average over replicas takes)."""
    reduction = tf_keras.losses.Reduction.NONE if per_example else tf_keras.losses.Reduction.AUTO
    return tf_keras.losses.SparseCategoricalCrossentropy(reduction=reduction)


def copy(model: tf_keras.Model) -> tf_keras.Model:
    """A new model of the same layers and weights (made in the caller's tf.distribute scope, if any)."""
    twin = tf_keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def loss_scaled(optimizer: tf_keras.optimizers.Optimizer) -> tf_keras.optimizers.Optimizer:
    """Dynamic loss scaling for float16 compute (--mixed-precision): small float16 gradients would flush
    to zero; use get_scaled_loss before and get_unscaled_gradients after the tape."""
    return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)


def average(first: tf_keras.Model, second: tf_keras.Model) -> tf_keras.Model:
    """A new model whose every weight is the mean of the two models' (same layers). For heads that end
    in one Dense softmax layer on the same features, that averages their logits: the two heads'
    ensemble, exported as one layer."""
    mean = copy(first)
    mean.set_weights([(a + b) / 2 for a, b in zip(first.get_weights(), second.get_weights())])
    return mean
