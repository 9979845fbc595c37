"""An independent NumPy port of EfficientNet-Lite0, the reference the TensorFlow module is checked against.

Written from the architecture facts alone, sharing nothing with retrain/lite0.py but the weight reader:
its own SAME-padding arithmetic, im2col + matmul for full convolutions, tap-by-tap sums for depthwise
ones, and unfolded batch norm. Float32 [N, 224, 224, 3] in [0, 1] -> float32 [N, 1280].
"""
from __future__ import annotations

import numpy as np

EPS = 1e-3
# (kernel, first stride, output channels, repeats); every stage but the first expands by 6.
LAYOUT = [(3, 1, 16, 1), (3, 2, 24, 2), (5, 2, 40, 2), (3, 2, 80, 3), (5, 1, 112, 3), (5, 2, 192, 4), (3, 1, 320, 1)]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow's SAME rule: output ceil(size / stride); the odd pixel of padding goes after."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _pad(x: np.ndarray, kernel: int, stride: int) -> tuple[np.ndarray, int, int]:
    out_h, top, bottom = same_padding(x.shape[1], kernel, stride)
    out_w, left, right = same_padding(x.shape[2], kernel, stride)
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))), out_h, out_w


def _taps(xp: np.ndarray, kernel: int, stride: int, out_h: int, out_w: int):
    for i in range(kernel):
        for j in range(kernel):
            yield i, j, xp[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]


def conv(x: np.ndarray, weight: np.ndarray, stride: int = 1) -> np.ndarray:
    """Full convolution with a torch-layout weight [out, in, k, k], by im2col and one matmul."""
    out_c, in_c, kernel, _ = weight.shape
    if kernel == 1 and stride == 1:
        return (x.reshape(-1, in_c) @ weight[:, :, 0, 0].T).reshape(*x.shape[:3], out_c)
    xp, out_h, out_w = _pad(x, kernel, stride)
    columns = np.stack([tap for _, _, tap in _taps(xp, kernel, stride, out_h, out_w)], axis=3)
    # columns: [N, oh, ow, k*k, in]; the weight is flattened in the same (tap, channel) order.
    flat_weight = weight.transpose(2, 3, 1, 0).reshape(kernel * kernel * in_c, out_c)
    return (columns.reshape(-1, kernel * kernel * in_c) @ flat_weight).reshape(x.shape[0], out_h, out_w, out_c)


def depthwise(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """Per-channel convolution with a torch depthwise weight [C, 1, k, k]."""
    kernel = weight.shape[-1]
    xp, out_h, out_w = _pad(x, kernel, stride)
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]), np.float32)
    for i, j, tap in _taps(xp, kernel, stride, out_h, out_w):
        out += tap * weight[:, 0, i, j]
    return out


def batch_norm(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return (x - w[name + ".running_mean"]) / np.sqrt(w[name + ".running_var"] + EPS) * w[name + ".weight"] \
        + w[name + ".bias"]


def relu6(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 6.0)


def features(images: np.ndarray, w: dict) -> np.ndarray:
    """float32 [N, H, W, 3] in [0, 1] -> [N, 1280]: pixels to (p - 127) / 128, stem, 16 blocks, head, mean."""
    x = (images.astype(np.float32) * 255.0 - 127.0) / 128.0
    x = relu6(batch_norm(conv(x, w["_conv_stem.weight"], 2), w, "_bn0"))
    index = 0
    for _kernel, stride, out_c, repeats in LAYOUT:
        for r in range(repeats):
            p = f"_blocks.{index}."
            block_stride = stride if r == 0 else 1
            y = x
            if p + "_expand_conv.weight" in w:
                y = relu6(batch_norm(conv(y, w[p + "_expand_conv.weight"]), w, p + "_bn0"))
            y = relu6(batch_norm(depthwise(y, w[p + "_depthwise_conv.weight"], block_stride), w, p + "_bn1"))
            y = batch_norm(conv(y, w[p + "_project_conv.weight"]), w, p + "_bn2")
            x = x + y if block_stride == 1 and x.shape[-1] == out_c else y
            index += 1
    x = relu6(batch_norm(conv(x, w["_conv_head.weight"]), w, "_bn1"))
    return x.mean(axis=(1, 2))


def imagenet_logits(feature_vectors: np.ndarray, w: dict) -> np.ndarray:
    return feature_vectors @ w["_fc.weight"].T + w["_fc.bias"]
