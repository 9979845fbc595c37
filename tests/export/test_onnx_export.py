"""--onnx: model.onnx from serving_images, checked with onnxruntime; a missing extra or a failing converter
is one line and the SavedModel stays."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from retrain.cli import main
from retrain.config import Config
from retrain.errors import RetrainError
from serving_fixture import IMAGE_SIZE, LABELS, solid_images

onnx_export = pytest.importorskip("retrain.export.onnx_export")
pytest.importorskip("tf2onnx", reason="needs the onnx extra (pip install 'retrain[onnx]')")


@pytest.fixture(scope="module")
def onnx_model(serving_export, tmp_path_factory):
    return onnx_export.export_onnx(serving_export.version_dir, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_onnxruntime_answers_like_the_saved_model(serving_export, onnx_model):
    rng = np.random.default_rng(0)
    images = np.concatenate([solid_images(), rng.random((70, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)])
    loaded = tf.saved_model.load(str(serving_export.version_dir))
    expected = loaded.signatures["serving_images"](images=tf.constant(images))["scores"].numpy()
    np.testing.assert_allclose(onnx_export.onnx_scores(onnx_model, images), expected, atol=1e-4)
    assert onnx_export.onnx_scores(onnx_model, images[:0]).shape == (0, len(LABELS))


def test_the_onnx_contract_names_its_tensors_and_carries_the_labels(onnx_model):
    import onnx

    model = onnx.load(str(onnx_model))
    [source], first = model.graph.input, model.graph.output[0]
    assert source.name == "images" and first.name == "scores"
    assert [d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim] == ["batch", IMAGE_SIZE,
                                                                                        IMAGE_SIZE, 3]
    assert json.loads({p.key: p.value for p in model.metadata_props}["labels"]) == LABELS


def test_a_missing_extra_is_one_line_naming_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # what Python does for a module that is not there
    with pytest.raises(RetrainError, match=r"^--onnx: tf2onnx not installed; .*pip install 'retrain\[onnx\]'"):
        Config(images=None, onnx=True)


def test_the_command_line_refuses_onnx_without_its_extra_before_any_work(colour_images, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = CliRunner().invoke(main, ["--images", str(colour_images), "--output", str(tmp_path / "out"), "--onnx"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "onnxruntime not installed" in result.output and "pip install 'retrain[onnx]'" in result.output
    assert not (tmp_path / "out").exists()


def test_a_failing_converter_is_one_line_and_writes_nothing(serving_export, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "OPSET", 1)  # an opset tf2onnx refuses: a real converter failure
    with pytest.raises(RetrainError, match="^--onnx: tf2onnx .* failed on .*; the SavedModel is kept$"):
        onnx_export.export_onnx(serving_export.version_dir, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_run_with_onnx_and_tflite_reports_both_checks(colour_images, fake_module, tmp_path):
    out = tmp_path / "out"
    args = ["--images", colour_images, "--module", fake_module, "--output", out, "--image-size", 32, "--epochs", 40,
            "--onnx", "--tflite", "uint8"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    run_dir = out / "runs" / "1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name, key in (("onnx", "onnx_accuracy"), ("tflite", "tflite_accuracy")):
        check = metrics[name]
        assert check["images"] > 0 and check["drop_points"] <= 1.0 and check["changed_answers"] == 0, check
        assert check[key] == check["saved_model_accuracy"]
    assert (run_dir / "model.onnx").is_file() and json.loads((run_dir / "onnx_info.json").read_text())["check"]
    page = (run_dir / "report.html").read_text()
    assert "tflite (uint8)" in page and "<td>onnx</td>" in page and "answers changed" in page
    assert "onnx: accuracy" in result.output and "tflite (uint8): accuracy" in result.output
    # Each check said once, in the summary; tf2onnx's own lines ("Using opset <onnx, 17>") only with -v.
    assert result.output.count("answers changed") == 2 and "opset" not in result.output, result.output
