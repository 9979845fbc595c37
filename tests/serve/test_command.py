"""`retrain serve` at the command line, and the REST codec against any JSON a client may send."""
from __future__ import annotations

import json
import socket
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from retrain.cli import main
from retrain.serve import rest


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
