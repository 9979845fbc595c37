"""The default module on real images: 10 Fashion-MNIST classes x 50 training images, 100 test images each.

Marked slow (the real EfficientNet-Lite0 module, about a minute); CI runs it. Needs Debian's
dataset-fashion-mnist, which .ci/run installs.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from retrain.cli import main
from retrain.export.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fashion_mnist", ROOT / "bench" / "fashion_mnist.py")
fashion_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fashion_mnist)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not fashion_mnist.SOURCE.is_dir(),
                       reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"),
]


def test_default_module_reaches_082_on_held_out_test_images(tmp_path):
    train, test, out = tmp_path / "train", tmp_path / "test", tmp_path / "out"
    fashion_mnist.write("train", 50, train)
    fashion_mnist.write("t10k", 100, test)
    result = CliRunner().invoke(main, ["--images", str(train), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "runs" / "1" / "labels.txt").read_text().splitlines() == sorted(fashion_mnist.CLASSES)
    evaluation = evaluate(out, test)
    assert evaluation.count == 1000
    assert evaluation.accuracy >= 0.82, evaluation.per_class
