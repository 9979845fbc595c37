"""`retrain serve` at the command line, and the REST codec against any JSON a client may send."""
from __future__ import annotations

import base64
import gc
import json
import socket
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from retrain.cli import main
from retrain.serve import raw_b64, rest


def test_without_the_serve_extra_one_line_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError, as when absent
    result = CliRunner().invoke(main, ["serve", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == 'Error: serve: uvicorn is not installed; expected `pip install "retrain[serve]"`\n'


def test_a_version_folder_is_refused_naming_its_parent(tmp_path):
    pytest.importorskip("uvicorn")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"")
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "3")])
    assert result.exit_code == 1 and "expected its parent, the base path" in result.output
    assert len(result.output.splitlines()) == 1


def test_a_busy_port_is_one_line(tmp_path):
    pytest.importorskip("uvicorn")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: --port: cannot listen on 127.0.0.1:{port}")


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                    | st.text(max_size=8) | st.just({"b64": "aGk="}) | st.just({"b64": "a-_"}),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                max_size=3), max_leaves=20)
SPECS = [{"image_bytes": "DT_STRING"}, {"images": "DT_FLOAT"}, {"a": "DT_INT32", "b": "DT_STRING"}]


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "x"]), JSON, max_size=3),
       specs=st.sampled_from(SPECS))
def test_any_json_is_a_tensor_map_or_a_rest_error(document, specs):
    try:
        arrays, _ = rest.predict_inputs(rest.parse(json.dumps(document).encode()), specs)
    except rest.RestError as error:
        assert error.status == 400 and str(error)
        return
    assert set(arrays) <= set(specs) and all(isinstance(a, np.ndarray) for a in arrays.values())


@settings(max_examples=200, deadline=None)
@given(document=st.dictionaries(st.sampled_from(["examples", "context", "signature_name"]), JSON, max_size=3))
def test_any_classify_json_is_examples_or_a_rest_error(document):
    try:
        examples = rest.classify_examples(rest.parse(json.dumps(document).encode()))
    except rest.RestError as error:
        assert error.status == 400 and str(error)
        return
    assert examples and all(isinstance(e, bytes) for e in examples)


@given(body=st.binary(max_size=40))
def test_any_bytes_parse_or_are_refused(body):
    try:
        assert isinstance(rest.parse(body), dict)
    except rest.RestError as error:
        assert str(error).startswith(("JSON Parse error", "JSON Value"))


@given(text=st.text(alphabet="ABCaz09+/=-_ \né", max_size=12))
def test_base64_is_refused_exactly_where_the_emulator_refuses_it(text):
    import rest_emulator

    try:
        expected = rest_emulator._b64decode(text)
    except rest_emulator.RestError:
        expected = None
    try:
        found = rest.b64decode({"b64": text})
    except rest.RestError as error:
        assert str(error) == "Unable to base64 decode"
        found = None
    assert found == expected


B64_TEXT = st.binary(min_size=6, max_size=30).map(lambda data: base64.b64encode(data).decode())
LIFTABLE = st.recursive(st.integers(-5, 5) | st.text(alphabet='ab"\\:', max_size=6) | B64_TEXT
                        | B64_TEXT.map(lambda text: {"b64": text}),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                            st.sampled_from(["b64", "a", 'x"b64', "\0lifted:0"]), inner, max_size=2), max_leaves=8)


def _outcome(body: bytes, specs: dict | None) -> tuple:
    """What :predict (with specs) or :classify (None) makes of body: its arrays or examples, or its error."""
    try:
        if specs is None:
            return "ok", rest.classify_examples(rest.parse(body))
        arrays, row = rest.predict_inputs(rest.parse(body), specs)
    except rest.RestError as error:
        return "error", str(error), error.status
    return "ok", row, {name: (a.shape, list(a.ravel())) for name, a in arrays.items()}


@settings(max_examples=400, deadline=None)
@given(document=st.dictionaries(st.sampled_from(["instances", "inputs", "examples", "signature_name"]), LIFTABLE,
                                max_size=2),
       specs=st.sampled_from([*SPECS, None]), spaces=st.sampled_from([None, (", ", ": "), (" ,\n", " :\t")]),
       cut=st.integers(0, 400), byte=st.integers(0, 255), mutate=st.booleans())
def test_long_base64_decoded_from_the_body_changes_no_answer_and_no_error(document, specs, spaces, cut, byte, mutate):
    """raw_b64.parse (long b64 texts decoded straight from the body's bytes) against the JSON parser alone, on
    documents with b64 texts in and out of {"b64": ...} objects, odd keys, spacing and a mutated byte."""
    body = bytearray(json.dumps(document, separators=spaces).encode())
    if mutate and body:
        body[cut % len(body)] = byte
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(raw_b64, "_LIFT_CHARS", 8)  # every b64 text of 8 characters or more is lifted
        lifted = _outcome(bytes(body), specs)
        patch.setattr(raw_b64, "parse", lambda body, quoted_chars: None)
        assert lifted == _outcome(bytes(body), specs)


def test_a_photo_sized_b64_is_decoded_from_the_body():
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
    document = raw_b64.parse(body, rest.DEBUG_CHARS)
    assert document is not None and rest.b64decode(document["instances"][0]) == data


def _cycles_left_by(work) -> int:
    """Objects that only the cyclic GC would free after work() returns (0: reference counting freed all)."""
    gc.collect()
    gc.disable()
    try:
        work()
        return gc.collect()
    finally:
        gc.enable()


@pytest.mark.parametrize("lifted", [True, False], ids=["b64-from-the-body", "json-parser"])
def test_parsing_a_request_leaves_no_reference_cycle(monkeypatch, lifted):
    """A cycle keeps a request's decoded images (6 MB a photo) alive until the cyclic GC runs: the server
    grew ~20 MB per 1,000 photo requests while two self-calling closures made one (docs/benchmarks.md)."""
    data = np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    b64 = {"b64": base64.b64encode(data).decode()}
    body = json.dumps({"signature_name": "serving_default", "instances": [b64, b64]}).encode()
    if not lifted:
        monkeypatch.setattr(raw_b64, "parse", lambda body, quoted_chars: None)

    def parse() -> None:
        arrays, row = rest.predict_inputs(rest.parse(body), {"image_bytes": "DT_STRING"})
        assert row and arrays["image_bytes"].tolist() == [data, data]

    assert _cycles_left_by(parse) == 0


def test_the_cycle_check_sees_a_self_calling_closure():
    """The twin: the parse before the fix, in small (a closure that calls itself, holding the values)."""
    def parse() -> None:
        values = [b"decoded"]

        def walk(depth: int) -> int:
            return depth and walk(depth - 1) + len(values)
        assert walk(2) == 2

    assert _cycles_left_by(parse) > 0
