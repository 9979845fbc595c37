"""TF Serving's REST JSON, both ways: request bodies -> arrays or tf.Examples, results -> answer bodies.

Follows tensorflow_serving/util/json_tensor.cc (TF Serving 2.x): a :predict body holds exactly one of
"instances" (row format: a non-empty list, one value or one object naming every input per instance)
and "inputs" (columnar); a bytes value is an object whose single key is "b64" (standard alphabet);
row answers are {"predictions": [...]}, columnar ones {"outputs": ...}; string outputs whose name
ends in "_bytes" go back as {"b64": ...}; floats are written at float32 precision. A :classify body
holds "examples" (and an optional "context"), each a JSON object of feature name -> value(s), and is
answered {"results": [[[label, score], ...], ...]}. Every refusal is a RestError whose text is the
one TF Serving gives (long JSON values shortened) and whose status is its HTTP code.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

import numpy as np
import pybase64

from retrain.serve import raw_b64

# TensorFlow's DataType names -> (numpy dtype, DataTypeString as TF Serving's messages name it).
DTYPES = {
    "DT_FLOAT": (np.float32, "float"), "DT_DOUBLE": (np.float64, "double"), "DT_INT32": (np.int32, "int32"),
    "DT_INT16": (np.int16, "int16"), "DT_INT8": (np.int8, "int8"), "DT_UINT8": (np.uint8, "uint8"),
    "DT_STRING": (object, "string"), "DT_INT64": (np.int64, "int64"), "DT_BOOL": (np.bool_, "bool"),
    "DT_UINT32": (np.uint32, "uint32"), "DT_UINT64": (np.uint64, "uint64"),
}
_RANGES = {"DT_INT32": (-2**31, 2**31 - 1), "DT_INT16": (-2**31, 2**31 - 1), "DT_INT8": (-2**31, 2**31 - 1),
           "DT_UINT8": (-2**31, 2**31 - 1), "DT_INT64": (-2**63, 2**63 - 1), "DT_UINT32": (0, 2**32 - 1),
           "DT_UINT64": (0, 2**64 - 1)}  # rapidjson's IsInt/IsInt64/IsUint...: TF Serving narrows int8/16 later
DEBUG_CHARS = 200  # a JSON value quoted in an error is cut here: an image's base64 would fill a screen


class RestError(Exception):
    """A refused request: str() is the "error" text, `status` the HTTP code TF Serving answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _debug(value) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= DEBUG_CHARS else text[:DEBUG_CHARS] + "..."


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):  # a raw_b64.Decoded too
        return "Object"
    return {list: "Array", str: "String"}.get(type(value), "Number")


def parse(body: bytes) -> dict:
    """The request body as a JSON object (TF Serving's ParseJson)."""
    if not body:
        raise RestError("JSON Parse error: The document is empty")
    lifted = raw_b64.parse(body, DEBUG_CHARS)
    if lifted is not None:
        return lifted
    try:
        document = json.loads(body)
    except UnicodeDecodeError as error:
        raise RestError(f"JSON Parse error: Invalid encoding in string. at offset: {error.start}") from None
    except json.JSONDecodeError as error:
        raise RestError(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    if not isinstance(document, dict):
        raise RestError(f"JSON Value: {_debug(document)} Is not object")
    return document


def signature_name(document: dict) -> str:
    """The optional "signature_name" ("" when absent: the server's serving_default)."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise RestError(f"JSON Value: {_debug(document)} not formatted correctly. "
                        "'signature_name' key must be a string value.")
    return name


def is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def b64decode(value, check: Callable[[bytes], None] | None = None) -> bytes:
    """The bytes of a {"b64": ...} object; `check` (the pixel bound) sees every decoded value."""
    if not is_b64(value):
        raise RestError(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
    data = value.data if isinstance(value, raw_b64.Decoded) else _unbase64(value["b64"])
    if check is not None:
        check(data)
    return data


def _unbase64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)  # padding may be left out
    try:  # SIMD: 0.2 ms for a 12-MP photo against 11-15 ms; it refuses a little more than binascii's strict mode
        return pybase64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        try:  # strict: the standard alphabet only, as absl::Base64Unescape (it also takes excess padding)
            return binascii.a2b_base64(padded, strict_mode=True)
        except (binascii.Error, ValueError):  # ValueError: a character outside ASCII
            raise RestError("Unable to base64 decode") from None


def _leaf(value, dtype: str, check):
    if isinstance(value, dict):
        if dtype != "DT_STRING":
            raise _type_error(value, dtype)
        return b64decode(value, check)
    if dtype == "DT_STRING":
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    if dtype == "DT_BOOL":
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dtype)
    if dtype in _RANGES:
        low, high = _RANGES[dtype]
        if not isinstance(value, int) or not low <= value <= high:
            raise _type_error(value, dtype)
    return value


def _type_error(value, dtype: str) -> RestError:
    return RestError(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: "
                     f"{DTYPES[dtype][1]}")


def _fill(item, level: int, shape: list[int], values: list, dtype: str, check) -> None:
    """Append the leaves of `item` (at `level` of a value of `shape`) to `values`, refusing a ragged one.
    A module function, not a closure: a nested function that calls itself is a reference cycle, and it
    kept each request's decoded images alive until the cyclic GC ran."""
    if not isinstance(item, list):
        if level != len(shape):
            raise RestError(f"JSON Value: {_debug(item)} found at incorrect level: {level + 1} "
                            f"in the JSON DOM. Expected at level: {len(shape)}")
        values.append(_leaf(item, dtype, check))
        return
    if level >= len(shape):
        raise RestError(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(item) != shape[level]:
        raise RestError(f"Encountered list at unexpected size: {len(item)} at level: {level} "
                        f"expected size: {shape[level]}")
    for element in item:
        _fill(element, level + 1, shape, values, dtype, check)


def tensor(value, dtype: str, check=None) -> np.ndarray:
    """A JSON value (scalar, b64 object or rectangular nested lists) as an array (FillTensorProto)."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    values: list = []
    _fill(value, 0, shape, values, dtype, check)
    array = np.empty(len(values), dtype=object) if dtype == "DT_STRING" else None
    if array is not None:
        array[:] = values
    else:
        array = np.array(values, dtype=DTYPES[dtype][0])
    return array.reshape(shape)


def _object(value) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def _rows(instances: list, specs: dict[str, str], check) -> dict[str, np.ndarray]:
    """Row format (FillTensorMapFromInstancesList): every instance gives one slice of every input."""
    if not isinstance(instances[0], dict) and len(specs) > 1:
        raise RestError("instances is a plain list, but expecting list of objects as multiple input tensors "
                        "required as per tensorinfo_map")
    objects, names = _object(instances[0]), sorted(specs)
    parts: dict[str, list] = {}

    def add(item, name: str) -> np.ndarray:
        if name not in specs:
            raise RestError(f"JSON object: does not have named input: {name}")
        part = tensor(item, specs[name], check)
        if parts.get(name) and parts[name][0].shape != part.shape:
            first = parts[name][0]
            if first.size != part.size:
                raise RestError(f"Expecting tensor size: {first.size} but got: {part.size}")
            raise RestError(f"Expecting shape {list(first.shape)} but got: {list(part.shape)}")
        parts.setdefault(name, []).append(part)
        return part

    for count, element in enumerate(instances):
        if objects:
            if not _object(element):
                raise RestError(f"Expecting object but got list at item {count} of input list")
            for name, item in element.items():
                try:
                    add(item, name)
                except RestError as error:
                    raise RestError(f"Failed to process element: {count} key: {name} of 'instances' list. "
                                    f"Error: INVALID_ARGUMENT: {error}") from None
            if sorted(element) != names:
                raise RestError(f"Failed to process element: {count} of 'instances' list. JSON object: "
                                f"{_debug(element)} keys must be equal to: {','.join(names)}")
        else:
            if _object(element):
                raise RestError(f"Expecting value/list but got object at item {count} of input list")
            try:
                add(element, names[0])
            except RestError as error:
                raise RestError(f"Failed to process element: {count} of 'instances' list. "
                                f"Error: INVALID_ARGUMENT: {error}") from None
    return {name: np.stack(items) if items[0].ndim or items[0].dtype != object else _stack_strings(items)
            for name, items in parts.items()}


def _stack_strings(items: list[np.ndarray]) -> np.ndarray:
    """Scalar bytes into a 1-D object array (np.stack would try to make a bytes array of them)."""
    array = np.empty(len(items), dtype=object)
    array[:] = [item.item() for item in items]
    return array


def _columns(inputs, specs: dict[str, str], check) -> dict[str, np.ndarray]:
    """Columnar format (FillTensorMapFromInputsMap): one value, or an object with every input by name."""
    if not isinstance(inputs, dict) or is_b64(inputs):
        if len(specs) > 1:
            raise RestError("inputs is a plain value/list, but expecting an object as multiple input tensors "
                            "required as per tensorinfo_map")
        name = sorted(specs)[0]
        return {name: tensor(inputs, specs[name], check)}
    arrays = {}
    for name in sorted(specs):
        if name not in inputs:
            raise RestError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = tensor(inputs[name], specs[name], check)
    return arrays


def predict_inputs(document: dict, specs: dict[str, str], check=None) -> tuple[dict[str, np.ndarray], bool]:
    """(input name -> array, whether the request was in row format) for a :predict body
    (FillPredictRequestFromJson); `specs` maps the signature's input names to DataType names."""
    if not specs:
        raise RestError(f"Failed to get input map for signature: {signature_name(document) or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise RestError(f"JSON Value: {_debug(document)} Not formatted correctly expecting only one of "
                            "'inputs' or 'instances' keys to exist ")
        instances = document["instances"]
        if not isinstance(instances, list):
            raise RestError(f"JSON Value: {_debug(document)} Expecting 'instances' to be an list/array")
        if not instances:
            raise RestError(f"JSON Value: {_debug(document)} No values in 'instances' array")
        return _rows(instances, specs, check), True
    if "inputs" in document:
        return _columns(document["inputs"], specs, check), False
    raise RestError("Missing 'inputs' or 'instances' key")


def _float_text(array: np.ndarray) -> list:
    """Floats as TF Serving writes them: the shortest text that reads back as the same float32."""
    # str() of a numpy float32 is its shortest round-trip text; np.vectorize would hand over doubles
    texts = np.empty(array.size, dtype=object)
    texts[:] = [float(str(value)) for value in array.ravel()]
    return texts.reshape(array.shape).tolist()


def _values(array: np.ndarray, as_b64: bool):
    if array.dtype == object:
        def text(value: bytes):
            return {"b64": base64.b64encode(value).decode("ascii")} if as_b64 else value.decode("utf-8", "replace")
        return np.vectorize(text, otypes=[object])(array).tolist() if array.size else array.tolist()
    if array.dtype == np.float32:
        return _float_text(array)
    return array.tolist()


def predict_answer(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """The :predict answer (MakeRowFormatJsonFromTensors / MakeColumnarFormatJsonFromTensors)."""
    if not outputs:
        raise RestError("Cannot convert empty tensor map to JSON")
    values = {name: _values(array, name.endswith("_bytes") and array.dtype == object)
              for name, array in sorted(outputs.items())}
    if not row:
        return {"outputs": values if len(values) > 1 else next(iter(values.values()))}
    batch = -1
    for name, array in sorted(outputs.items()):
        if array.ndim == 0:
            raise RestError(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and array.shape[0] != batch:
            raise RestError(f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(batch)]}


def _feature_kind(feature) -> str:
    return feature.WhichOneof("kind") or ""


def _add_value(value, name: str, feature, check) -> None:
    """One JSON value into a tf.train.Feature (AddValueToFeature): kinds may not mix."""
    def kind_ok(kind: str) -> None:
        found = _feature_kind(feature)
        if found and found != kind:
            raise RestError(f"Unexpected element type in feature: {name} expecting type: "
                            f"{found.replace('_list', '')}")

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_b64(value)):
        raise RestError(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")
    if isinstance(value, bool):
        kind_ok("int64_list")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict):
        kind_ok("bytes_list")
        feature.bytes_list.value.append(b64decode(value, check))
    elif isinstance(value, str):
        kind_ok("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float) or not -2**63 <= value < 2**64:  # rapidjson holds the latter as a double
        kind_ok("float_list")
        try:
            feature.float_list.value.append(float(value))
        except OverflowError:  # an integer past double range: rapidjson refuses the document
            raise RestError("JSON Parse error: Number too big to be stored in double") from None
    else:
        kind_ok("int64_list")
        if value >= 2**63:
            raise RestError(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def _example(value, check):
    from tensorflow.core.example import example_pb2

    if not isinstance(value, dict):
        raise RestError(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature, check)
    return example


def classify_examples(document: dict, check=None) -> list[bytes]:
    """The serialized tf.train.Examples of a :classify body (FillClassifyRegressRequestFromJson); a
    "context" is merged into each example (its serialization first, so the example's own features win),
    as TF Serving feeds an ExampleListWithContext."""
    context = _example(document["context"], check).SerializeToString() if "context" in document else b""
    examples = document.get("examples")
    if "examples" not in document:
        raise RestError(f"JSON Value: {_debug(document)} When method is classify, key 'examples' is expected "
                        "and was not found")
    if not isinstance(examples, list):
        raise RestError(f"JSON Value: {_debug(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise RestError(f"JSON Value: {_debug(document)} 'examples' value is an empty array")
    return [context + _example(item, check).SerializeToString() for item in examples]


def classify_answer(classes: np.ndarray | None, scores: np.ndarray | None) -> dict:
    """{"results": per example, [label, score] per class} (MakeJsonFromClassificationResult); a model
    without a classes output labels every score "", one without scores scores every label 0."""
    rows = len(classes if classes is not None else scores)
    width = (classes if classes is not None else scores).shape[1]
    labels = [[""] * width] * rows if classes is None else \
        [[c.decode("utf-8", "replace") for c in row] for row in classes.tolist()]
    values = [[0.0] * width] * rows if scores is None else _float_text(scores.astype(np.float32))
    if not rows:
        raise RestError("Cannot convert empty ClassificationResults to JSON")
    return {"results": [[[label, score] for label, score in zip(ls, vs)] for ls, vs in zip(labels, values)]}
