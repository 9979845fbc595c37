"""errors.reason: the real reason of a TensorFlow error in one line, however it was raised."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from retrain.errors import MAX_REASON, RetrainError, reason

TRUNCATED_PNG = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)).numpy()[:-12]


def _clean(line: str) -> None:
    assert line and "\n" not in line and len(line) <= MAX_REASON
    for noise in ("Graph execution error", "{{", "[[", "Op:", "Detected at node", "InvalidArgumentError"):
        assert noise not in line, line


def test_an_op_error_in_a_tf_function():
    decode = tf.function(lambda b: tf.io.decode_png(b))
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        decode(tf.constant(TRUNCATED_PNG))
    _clean(reason(info.value))


def test_an_op_error_in_a_tf_data_pipeline():
    ds = tf.data.Dataset.from_tensor_slices([TRUNCATED_PNG]).map(tf.io.decode_png)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(ds)
    _clean(reason(info.value))


def test_an_assertion_in_a_loaded_signature_gives_its_own_text(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: tf.debugging.Assert(x > 0, ["x: found a negative number, expected > 0"]) and x,
                           input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.f.get_concrete_function()})
    signature = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        signature(x=tf.constant(-1.0))
    assert reason(info.value) == "x: found a negative number, expected > 0"


def test_plain_errors_give_their_first_line_or_their_type():
    assert reason(ValueError("bad value\nmore detail")) == "bad value"
    assert reason(KeyError()) == "KeyError"
    assert reason(RetrainError("--images: found x, expected y")) == "--images: found x, expected y"
    assert len(reason(ValueError("x" * 1000))) == MAX_REASON


def test_numpy_errors_pass_through():
    with pytest.raises(ValueError) as info:
        np.zeros(3).reshape(2, 2)
    assert "reshape" in reason(info.value)
