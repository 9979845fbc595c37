"""--tflite: the file, its tflite_info.json, the accuracy check and exit code 3 past --max-export-drop."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from retrain.cli import main


def _run(colour_images, fake_module, out, *extra):
    args = ["--images", colour_images, "--module", fake_module, "--output", out, "--image-size", 32,
            "--epochs", 40, *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
def test_tflite_is_written_and_checked(colour_images, fake_module, tmp_path):
    result = _run(colour_images, fake_module, tmp_path / "out", "--tflite", "float16")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "out" / "runs" / "1"
    assert (run_dir / "model.tflite").stat().st_size > 0 and (run_dir / "labels.txt").is_file()
    info = json.loads((run_dir / "tflite_info.json").read_text())
    assert info["input"]["shape"] == [-1, 32, 32, 3] and "[0, 1]" in info["input"]["normalisation"]
    assert info["check"]["drop_points"] <= 1.0
    assert "tflite (float16)" in result.output


@pytest.mark.slow
def test_too_large_a_drop_fails_with_exit_3_and_keeps_the_file(colour_images, fake_module, tmp_path,
                                                                 monkeypatch):
    from retrain.export import tflite
    real = tflite.tflite_scores
    # A broken converter stand-in: the real interpreter's scores, rolled one class over.
    monkeypatch.setattr(tflite, "tflite_scores", lambda path, images: np.roll(real(path, images), 1, axis=1))
    result = _run(colour_images, fake_module, tmp_path / "out", "--tflite", "float32")
    assert result.exit_code == 3, result.output
    assert "--max-export-drop" in result.output and "file kept for inspection" in result.output
    assert "answers changed)" in result.output  # the check's figures: the run ends before its summary
    assert (tmp_path / "out" / "runs" / "1" / "model.tflite").is_file()
    assert (tmp_path / "out" / "saved_model" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_a_full_integer_file_has_its_new_layer_refitted_and_checked(colour_images, fake_module, tmp_path):
    result = _run(colour_images, fake_module, tmp_path / "out", "--tflite", "uint8")
    assert result.exit_code == 0, result.output
    assert "refitted the quantised file's last layer to its own features of" in result.output
    info = json.loads((tmp_path / "out" / "runs" / "1" / "tflite_info.json").read_text())
    assert info["input"]["shape"] == [1, 32, 32, 3] and info["input"]["dtype"] == "uint8"
    assert "refitted" in info["output"]["last_layer"] and info["check"]["drop_points"] <= 1.0
