"""The torch-free weight reader: right tensors out, nothing executed, nothing altered accepted."""
from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest

from retrain.backbone import lite0_weights
from retrain.errors import RetrainError


@pytest.fixture(scope="module")
def weights() -> dict:
    return lite0_weights.read_lite0_weights()


def test_reads_all_296_tensors_with_their_shapes(weights):
    assert len(weights) == 296
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in weights  # expand ratio 1: no expansion
    assert weights["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert weights["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert weights["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert weights["_fc.weight"].shape == (1000, 1280)
    counters = [k for k in weights if k.endswith("num_batches_tracked")]
    assert all(weights[k].shape == () and weights[k].dtype == np.int64 for k in counters)
    floats = [v for k, v in weights.items() if k not in counters]
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in floats)
    assert all(v.flags.c_contiguous and v.flags.writeable for v in floats)
    assert (weights["_bn1.running_var"] > 0).all()


def _legacy_file(path, main_object) -> str:
    """Write a legacy-format file whose main pickle is ``main_object``; returns its SHA-256."""
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}):
            pickle.dump(header, f, protocol=2)
        pickle.dump(main_object, f, protocol=2)
        pickle.dump([], f, protocol=2)
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_forbidden_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    digest = _legacy_file(path, {"_conv_stem.weight": _Payload(marker)})
    with pytest.raises(RetrainError, match=r"evil\.pth: refused global \w+\.system") as error:
        lite0_weights.read_state_dict(path, sha256=digest)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_a_wrong_digest_is_refused_before_reading(tmp_path):
    original = lite0_weights.lite0_weights_path().read_bytes()
    tampered = tmp_path / "tampered.pth"
    tampered.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    expected = lite0_weights.LITE0_SHA256
    with pytest.raises(RetrainError, match=f"tampered.pth: SHA-256 [0-9a-f]{{64}}, expected {expected}"):
        lite0_weights.read_state_dict(tampered)


def test_the_bundled_file_matches_the_pinned_digest():
    assert hashlib.sha256(lite0_weights.lite0_weights_path().read_bytes()).hexdigest() == lite0_weights.LITE0_SHA256
