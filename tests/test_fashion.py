"""The default module on real images: 10 Fashion-MNIST classes x 50 training images, 100 test images each.

Marked slow (the real EfficientNet-Lite0 module, about a minute each); CI runs them. Needs Debian's
dataset-fashion-mnist, which .ci/run installs.
"""
from __future__ import annotations

import importlib.util
import json
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


def _write_images(tmp_path: Path) -> tuple[Path, Path]:
    train, test = tmp_path / "train", tmp_path / "test"
    fashion_mnist.write("train", 50, train)
    fashion_mnist.write("t10k", 100, test)
    return train, test


def test_default_module_reaches_082_on_held_out_test_images(tmp_path):
    (train, test), out = _write_images(tmp_path), tmp_path / "out"
    result = CliRunner().invoke(main, ["--images", str(train), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "runs" / "1" / "labels.txt").read_text().splitlines() == sorted(fashion_mnist.CLASSES)
    evaluation = evaluate(out, test)
    assert evaluation.count == 1000
    assert evaluation.accuracy >= 0.82, evaluation.per_class


@pytest.mark.parametrize("kind", ["int8", "uint8"])
def test_quantised_files_stay_within_the_export_drop_on_a_thousand_held_out_images(tmp_path, kind):
    """1,000 judged images, so one answer is 0.1 point. The converter's own file moved 58 (int8) and 53
    (uint8) answers here; with its new layer refitted to its quantised features, 49 and 48, and the
    accuracy rises 0.6-1.0 points (docs/benchmarks.md, eighth round)."""
    (train, test), out = _write_images(tmp_path), tmp_path / "out"
    result = CliRunner().invoke(main, ["--images", str(train), "--test-images", str(test), "--output", str(out),
                                       "--tflite", kind, "--max-export-drop", "1"])
    assert result.exit_code == 0, result.output
    check = json.loads((out / "runs" / "1" / "metrics.json").read_text())["tflite"]
    assert check["kind"] == kind and check["images"] == 1000, check
    assert check["drop_points"] <= 1.0 and check["changed_answers"] > 0, check  # quantised: some answers move
    assert "refitted the quantised file's last layer to its own features of 442 training images" in result.output
