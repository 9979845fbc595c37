"""TF Serving's REST :predict codec, in process, for contract tests without the server binary.

Follows tensorflow_serving/util/json_tensor.cc: a body holds exactly one of "instances" (row
format, a non-empty list) or "inputs" (columnar); {"b64": ...} means bytes only as an object whose
single key is "b64" (standard alphabet); row answers are {"predictions": [...]}, one object per
instance when there are several outputs, and need every output batch-major; columnar answers are
{"outputs": {...}}. String outputs whose key ends in "_bytes" come back as {"b64": ...}.
Imports only tensorflow and the standard library, so it runs in serve_check's bare process.
"""
from __future__ import annotations

import base64
import binascii
import json
import re

import numpy as np
import tensorflow as tf

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_NOISE = re.compile(r"Graph execution error:|Detected at node|<stack traces unavailable>")  # Python-side preamble


def op_message(text: str) -> str:
    """The first line of an op error that is not TensorFlow's Python-side preamble."""
    lines = [line for line in text.splitlines() if line.strip() and not _NOISE.match(line)]
    return lines[0].strip() if lines else text.strip()


class RestError(Exception):
    """An HTTP 400 answer; str() is the server's "error" text."""


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _b64decode(text: str) -> bytes:
    if not _BASE64.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise RestError("Unable to base64 decode")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as error:
        raise RestError("Unable to base64 decode") from error


def _leaf(value, dtype: tf.DType):
    if isinstance(value, dict):
        if dtype != tf.string or not _is_b64(value):
            raise RestError(f"JSON Value: {json.dumps(value)} not formatted correctly for base64 data")
        return _b64decode(value["b64"])
    if dtype == tf.string:
        if not isinstance(value, str):
            raise RestError(f"JSON Value: {json.dumps(value)} is not of expected type: string")
        return value.encode("utf-8")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RestError(f"JSON Value: {json.dumps(value)} is not of expected type: {dtype.name}")
    return value


def _tensor(value, dtype: tf.DType) -> np.ndarray:
    """A JSON value (scalar, b64 object or nested lists) -> ndarray; lists must be rectangular."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None

    def flat(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise RestError(f"JSON Value: {json.dumps(item)} found at incorrect level: {level + 1}")
            return [_leaf(item, dtype)]
        if level >= len(shape) or len(item) != shape[level]:
            raise RestError(f"Encountered list at unexpected size: {len(item)} at level: {level}")
        return [leaf for element in item for leaf in flat(element, level + 1)]

    values = flat(value, 0)
    array = np.array(values, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    return array.reshape(shape)


def _rows(instances: list, specs: dict) -> dict:
    """Row format: each instance is one value (single input) or an object naming every input."""
    names = sorted(specs)
    objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not objects and len(names) > 1:
        raise RestError("instances is a plain list, but expecting list of objects as multiple input tensors")
    columns = {name: [] for name in names}
    for i, item in enumerate(instances):
        if objects != (isinstance(item, dict) and not _is_b64(item)):
            raise RestError(f"Failed to process element: {i} of 'instances' list: mixed objects and values")
        if objects and sorted(item) != names:
            raise RestError(f"Failed to process element: {i} of 'instances' list. "
                            f"keys must be equal to: {','.join(names)}")
        for name in names:
            columns[name].append(_tensor(item[name] if objects else item, specs[name].dtype))
    for name, parts in columns.items():
        if len({part.shape for part in parts}) > 1:
            raise RestError(f"Expecting shape {list(parts[0].shape)} for every instance of {name}")
    return {name: np.stack(parts) for name, parts in columns.items()}


def _columns(inputs, specs: dict) -> dict:
    """Columnar format: one value (single input) or an object holding every input by name."""
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(specs) > 1:
            raise RestError("inputs is a plain value/list, but expecting an object as multiple input tensors")
        name = next(iter(specs))
        return {name: _tensor(inputs, specs[name].dtype)}
    missing = [name for name in specs if name not in inputs]
    if missing:
        raise RestError(f"Missing named input: {missing[0]} in 'inputs' object.")
    return {name: _tensor(inputs[name], spec.dtype) for name, spec in specs.items()}


def _json_values(array: np.ndarray, as_bytes: bool):
    if not array.size:
        return array.tolist()
    if array.dtype == object:
        def text(b: bytes):
            return {"b64": base64.b64encode(b).decode("ascii")} if as_bytes else b.decode("utf-8")

        return np.vectorize(text, otypes=[object])(array).tolist()
    if array.dtype == np.float32:  # the server prints floats at float precision, not double
        texts = np.empty(array.size, dtype=object)  # np.vectorize would hand str() doubles, not float32s
        texts[:] = [float(str(value)) for value in array.ravel()]
        return texts.reshape(array.shape).tolist()
    return array.tolist()


def _answer(outputs: dict, row: bool) -> dict:
    arrays = {name: value.numpy() for name, value in outputs.items()}
    values = {name: _json_values(a, name.endswith("_bytes")) for name, a in arrays.items()}
    if not row:
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    batch = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if None in batch or len(batch) != 1:
        raise RestError(f"Tensor outputs have no or inconsistent batch size: {sorted(map(str, batch))}")
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(batch.pop())]}


def predict(loaded, body: str) -> tuple[int, dict]:
    """Answer a POST .../models/<name>:predict body for a tf.saved_model.load()ed export.

    Returns (200, answer) or (400, {"error": message}) like the server; a graph error
    (InvalidArgumentError: not an image, too many pixels) is a 400 as well.
    """
    try:
        request = json.loads(body)
        if not isinstance(request, dict):
            raise RestError("JSON Value is not object")
        name = request.get("signature_name", "serving_default")
        if not isinstance(name, str) or name not in loaded.signatures:
            raise RestError(f"Serving signature name: {name!r} not found in signature def")
        function = loaded.signatures[name]
        specs = function.structured_input_signature[1]
        if ("instances" in request) == ("inputs" in request):
            raise RestError("Missing 'inputs' or 'instances' key, or both present: expecting exactly one")
        row = "instances" in request
        if row and (not isinstance(request["instances"], list) or not request["instances"]):
            raise RestError("No values in 'instances' array, expecting a non-empty list")
        arrays = _rows(request["instances"], specs) if row else _columns(request["inputs"], specs)
        outputs = function(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in arrays.items()})
        return 200, _answer(outputs, row)
    except (RestError, json.JSONDecodeError) as error:
        return 400, {"error": str(error)}
    except (ValueError, TypeError) as error:  # a tensor that does not fit the signature's spec
        return 400, {"error": str(error).strip().splitlines()[0]}
    except tf.errors.InvalidArgumentError as error:  # the server answers the op's message
        return 400, {"error": op_message(str(error))}
