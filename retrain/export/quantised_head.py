"""An int8/uint8 file's new layer, refitted to the features that the file's own quantised backbone computes.

Quantising the backbone moves its features: EfficientNet-Lite0's 1,280 move by 0.067 on average
where images spread by 0.26, more than half of it a shift shared by every image. The new layer was
trained on the float features, so the converter's file answers differently from the SavedModel on
a few percent of images, and on some sets loses more than a point. Distillation mends most of it:
the layer is fitted again, on the file's own features of training images, to give the SavedModel's
scores on those images. Only that layer's int8 weights, int32 bias and output quantisation change;
every other tensor of the converter's file keeps its bytes (a bias the converter dropped for being all
zeros comes back). docs/benchmarks.md (eighth round) has what it gains on seven trained runs.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import flatbuffers
import numpy as np

from retrain.export import litert
from retrain.export.assets import IMAGES_SIGNATURE

log = logging.getLogger(__name__)

FEATURES = "features"  # the output added to a copy of the file to read the layer's input
STEPS = 300  # full-batch Adam steps: the answers stop moving well before (measured on 300 to 2,000)
LEARNING_RATE = 5e-4
# Pull towards the converter's weights: makes the fit unique when there are fewer images than weights.
ANCHOR = 1e-4


@dataclasses.dataclass(frozen=True)
class Head:
    """Tensor indices, in the main subgraph, of the FULLY_CONNECTED layer that feeds the SOFTMAX."""
    features: int  # its input: int8 [N, D]
    weights: int  # int8 [K, D], one scale per row
    bias: int  # int32 [K], scale = features' scale x the row's weight scale; -1: none
    logits: int  # its output and the SOFTMAX's input: int8 [N, K]


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def find_head(model) -> Head | None:
    """The new layer of an unpacked full-integer model (schema.ModelT), or None when the file has none
    this module can refit (no FULLY_CONNECTED -> SOFTMAX, or not int8 with per-row weight scales)."""
    schema = _schema()
    graph = model.subgraphs[0]

    def code(op) -> int:  # builtin codes past 127 live in builtinCode only, older ones in both
        opcode = model.operatorCodes[op.opcodeIndex]
        return max(opcode.builtinCode, opcode.deprecatedBuiltinCode)

    producers = {int(out): op for op in graph.operators for out in op.outputs}
    for op in graph.operators:
        if code(op) != schema.BuiltinOperator.SOFTMAX:
            continue
        dense = producers.get(int(op.inputs[0]))
        if dense is None or code(dense) != schema.BuiltinOperator.FULLY_CONNECTED:
            continue
        features, weights = (int(i) for i in dense.inputs[:2])
        tensor = graph.tensors[weights]
        int8 = all(graph.tensors[i].type == schema.TensorType.INT8 for i in (features, weights, int(op.inputs[0])))
        if not (int8 and len(tensor.shape) == 2 and len(tensor.quantization.scale) == tensor.shape[0]
                and model.buffers[tensor.buffer].data is not None):
            continue
        bias = int(dense.inputs[2]) if len(dense.inputs) > 2 else -1  # the converter drops an all-zero bias
        if bias < 0 or (graph.tensors[bias].type == schema.TensorType.INT32
                        and model.buffers[graph.tensors[bias].buffer].data is not None):
            return Head(features, weights, bias, int(op.inputs[0]))
    return None


def _with_bias(model, head: Head) -> Head:
    """head, given an int32 bias tensor of zeros (its scale is set on rewriting) when it has none."""
    if head.bias >= 0:
        return head
    schema, graph = _schema(), model.subgraphs[0]
    rows = int(graph.tensors[head.weights].shape[0])
    buffer, tensor = schema.BufferT(), schema.TensorT()
    buffer.data = np.zeros(4 * rows, np.uint8)
    model.buffers.append(buffer)
    tensor.shape, tensor.type, tensor.name = [rows], schema.TensorType.INT32, b"bias"
    tensor.buffer, tensor.quantization = len(model.buffers) - 1, schema.QuantizationParametersT()
    tensor.quantization.scale, tensor.quantization.zeroPoint = np.ones(rows, np.float32), np.zeros(rows, np.int64)
    graph.tensors.append(tensor)
    dense = next(op for op in graph.operators if head.logits in op.outputs)
    dense.inputs = [head.features, head.weights, len(graph.tensors) - 1]
    return dataclasses.replace(head, bias=len(graph.tensors) - 1)


def _pack(model) -> bytes:
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _with_features(model, head: Head) -> bytes:
    """The model packed with the layer's input as a second output of serving_images, named FEATURES."""
    schema = _schema()
    graph = model.subgraphs[0]
    signature = next(s for s in model.signatureDefs if s.signatureKey.decode() == IMAGES_SIGNATURE)
    output = schema.TensorMapT()
    output.name, output.tensorIndex = FEATURES.encode(), head.features
    outputs, maps = list(graph.outputs), list(signature.outputs)
    graph.outputs, signature.outputs = [*outputs, head.features], [*maps, output]
    try:
        return _pack(model)
    finally:
        graph.outputs, signature.outputs = outputs, maps


def fit(features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
        bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights [D, K] and bias [K] minimising the cross-entropy of softmax(features @ W + b) against
    targets (float32 [N, K], rows summing to 1) plus ANCHOR * |W - weights|^2; starts from (weights, bias).

    Full-batch Adam for STEPS steps: deterministic for the same inputs.
    """
    params, anchor = [weights.astype(np.float64), bias.astype(np.float64)], weights.astype(np.float64)
    features, targets = features.astype(np.float64), targets.astype(np.float64)
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, STEPS + 1):
        logits = features @ params[0] + params[1]
        scores = np.exp(logits - logits.max(1, keepdims=True))
        error = (scores / scores.sum(1, keepdims=True) - targets) / len(features)
        grads = [features.T @ error + 2 * ANCHOR * (params[0] - anchor), error.sum(0)]
        for p, g, m in zip(params, grads, moments):
            m[0] = 0.9 * m[0] + 0.1 * g
            m[1] = 0.999 * m[1] + 0.001 * g * g
            p -= LEARNING_RATE * (m[0] / (1 - 0.9 ** step)) / (np.sqrt(m[1] / (1 - 0.999 ** step)) + 1e-7)
    return params[0].astype(np.float32), params[1].astype(np.float32)


def _feature_scale(model, head: Head) -> float:
    return float(model.subgraphs[0].tensors[head.features].quantization.scale[0])


def _read(model, head: Head) -> tuple[np.ndarray, np.ndarray]:
    """The layer as the converter wrote it, in float: weights [D, K] and bias [K]."""
    graph = model.subgraphs[0]
    row_scales = np.asarray(graph.tensors[head.weights].quantization.scale, np.float32)
    rows = np.frombuffer(model.buffers[graph.tensors[head.weights].buffer].data.tobytes(), np.int8)
    rows = rows.reshape(len(row_scales), -1).astype(np.float32) * row_scales[:, None]
    # The kernel reads the int32 bias at the features' scale times each row's, whatever the tensor says.
    bias = np.frombuffer(model.buffers[graph.tensors[head.bias].buffer].data.tobytes(), "<i4") * (
        _feature_scale(model, head) * row_scales)
    return rows.T, bias.astype(np.float32)


def _set(model, index: int, values: np.ndarray) -> None:
    model.buffers[model.subgraphs[0].tensors[index].buffer].data = np.frombuffer(values.tobytes(), np.uint8)


def _rewrite(model, head: Head, weights: np.ndarray, bias: np.ndarray, logits: np.ndarray) -> bytes:
    """The model packed with the layer set to weights [D, K] and bias [K]; its output quantisation
    spans `logits` (the new layer's float outputs on the fitting images) and 0."""
    graph = model.subgraphs[0]
    rows = weights.T  # FULLY_CONNECTED keeps weights as [K, D]
    feature_scale = _feature_scale(model, head)
    row_scales = np.abs(rows).max(1) / 127  # symmetric, zero point 0, like the converter
    row_scales = np.where(row_scales > 0, row_scales, 1 / 127)  # an all-zero row: any scale holds it
    row_scales = np.maximum(row_scales, np.abs(bias) / (feature_scale * 2**30))  # the int32 bias stays in range
    _set(model, head.weights, np.clip(np.round(rows / row_scales[:, None]), -127, 127).astype(np.int8))
    _set(model, head.bias, np.round(bias / (feature_scale * row_scales)).astype("<i4"))
    graph.tensors[head.weights].quantization.scale = row_scales.astype(np.float32)
    graph.tensors[head.bias].quantization.scale = (feature_scale * row_scales).astype(np.float32)
    low, high = min(float(logits.min()), 0.0), max(float(logits.max()), 0.0)
    scale = max(high - low, 1e-6) / 255
    output = graph.tensors[head.logits].quantization
    output.scale = np.array([scale], np.float32)
    output.zeroPoint = np.array([int(np.clip(np.round(-128 - low / scale), -128, 127))], np.int64)
    return _pack(model)


def refit(flatbuffer: bytes, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """flatbuffer (a full-integer file straight from the converter) with its new layer distilled from
    batches of (images float32 [n, H, W, 3] in [0, 1], the SavedModel's scores float32 [n, K] for them).

    Returns the flatbuffer unchanged when it has no layer to refit or batches hold no image.
    """
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    head = find_head(model)
    if head is None:
        log.info("kept the converter's last layer: found no int8 FULLY_CONNECTED feeding a SOFTMAX to refit")
        return flatbuffer
    head = _with_bias(model, head)
    reader = _with_features(model, head)
    pairs = [(litert.outputs(reader, images)[FEATURES], scores) for images, scores in batches]
    if not pairs:
        return flatbuffer
    features, targets = np.concatenate([f for f, _ in pairs]), np.concatenate([s for _, s in pairs])
    weights, bias = fit(features, targets, *_read(model, head))
    log.info("refitted the quantised file's last layer to its own features of %d training images", len(features))
    return _rewrite(model, head, weights, bias, features @ weights + bias)
