"""The command line in-process with click's CliRunner: exit code first, then the message."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fake_data import colour_set, write_images
from retrain import __version__
from retrain.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_lists_the_options():
    result = invoke("--help")
    assert result.exit_code == 0
    for option in ("--images", "--module", "--output", "--epochs", "--batch-size", "--learning-rate",
                   "--validation-split", "--image-size", "--seed", "--version"):
        assert option in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_bare_call_is_a_usage_error():
    result = invoke()
    assert result.exit_code == 2
    assert "Missing option '--images'" in result.output


def test_out_of_range_option_is_a_usage_error(tmp_path):
    result = invoke("--images", tmp_path, "--validation-split", "1.5")
    assert result.exit_code == 2 and "--validation-split" in result.output


def _one_line_error(result, code, text):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and text in lines[0], result.output
    assert "Traceback" not in result.output


def test_missing_folder(tmp_path):
    _one_line_error(invoke("--images", tmp_path / "nope"), 1, "is not a folder")


def test_empty_folder(tmp_path):
    _one_line_error(invoke("--images", tmp_path), 1, "has no class sub-folders")


def test_fewer_than_two_classes(tmp_path):
    root = write_images(tmp_path / "one", {"cat": [(1, 2, 3)] * 3})
    _one_line_error(invoke("--images", root), 1, "expected at least 2 class folders")


def test_class_without_images(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=3))
    (root / "zebra").mkdir()
    _one_line_error(invoke("--images", root), 1, "zebra has no images")


def test_unwritable_output_is_refused_before_training(tmp_path, fake_module):
    root = write_images(tmp_path / "imgs", colour_set(n=3))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run folder should go")
    result = invoke("--images", root, "--module", fake_module, "--output", blocker)
    _one_line_error(result, 1, f"--output: cannot write to {blocker}")
    assert blocker.read_text().startswith("a file")


def test_unwritable_cache_is_refused_before_training(tmp_path, fake_module):
    root = write_images(tmp_path / "imgs", colour_set(n=3))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    result = invoke("--images", root, "--module", fake_module, "--output", tmp_path / "o", "--cache-dir", blocker)
    _one_line_error(result, 1, f"--cache-dir: cannot write to {blocker}")


def test_image_size_conflict_names_both_sizes(tmp_path, fixed_module):
    root = write_images(tmp_path / "imgs", colour_set(n=3))
    result = invoke("--images", root, "--module", fixed_module, "--image-size", 64, "--output", tmp_path / "o")
    _one_line_error(result, 1, "--image-size: found 64, but module")
    assert "expects 32x32" in result.output


def test_happy_path_prints_a_summary_and_numbers_runs(tmp_path, fake_module):
    root = write_images(tmp_path / "imgs", colour_set(n=8))
    out = tmp_path / "out"
    (out / "runs" / "1").mkdir(parents=True)  # an earlier run: this one takes the next number
    result = invoke("--images", root, "--module", fake_module, "--output", out, "--epochs", 30)
    assert result.exit_code == 0, result.output
    assert "in 3 classes (blue, green, red)" in result.output
    assert "test accuracy: 1.000" in result.stdout and "report: " in result.stdout
    assert f"model: {out / 'saved_model' / '2'}" in result.stdout
    assert (out / "runs" / "2" / "labels.txt").read_text() == "blue\ngreen\nred\n"
    assert (out / "saved_model" / "2" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (out / "saved_model").iterdir()) == ["2"]


def test_modules_lists_the_bundled_default():
    result = invoke("modules")
    assert result.exit_code == 0, result.output
    assert "efficientnet_lite0" in result.output and "tfhub.dev" in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fake_module):
    """A run folder trained on colours with the fake module, and its images."""
    root = tmp_path_factory.mktemp("trained")
    images = write_images(root / "imgs", colour_set(n=8))
    result = invoke("--images", images, "--module", fake_module, "--output", root / "out", "--image-size", 32)
    assert result.exit_code == 0, result.output
    return root / "out", images


def test_predict_answers_good_files_and_names_the_bad_one(trained, tmp_path):
    out, images = trained
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    result = CliRunner().invoke(main, ["predict", str(out), str(images / "red" / "000.png"),
                                                       str(bad), "--top-k", "2"])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{images / 'red' / '000.png'}: red ")
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {bad}: ")


def test_predict_json_prints_only_json(trained):
    out, images = trained
    result = CliRunner().invoke(main, ["predict", str(out / "saved_model"),
                                                       str(images / "blue" / "001.png"), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["predictions"][0]["label"] == "blue"
    assert abs(sum(p["score"] for p in rows[0]["predictions"]) - 1) < 1e-4  # 3 labels, top 5: all of them


def test_evaluate_reports_accuracy_per_class(trained):
    out, images = trained
    result = invoke("evaluate", out, "--images", images)
    assert result.exit_code == 0, result.output
    assert "accuracy: 1.0000 on 24 images" in result.output and "red" in result.output


def test_evaluate_refuses_a_folder_the_model_does_not_know(trained, tmp_path):
    out, _ = trained
    other = write_images(tmp_path / "other", {"red": [(200, 0, 0)], "zebra": [(9, 9, 9)]})
    _one_line_error(invoke("evaluate", out, "--images", other), 1, "folders zebra are not labels of")


@pytest.mark.parametrize("args, text", [
    (["--epochs", "5", "predict", "m", "x.png"], "--epochs train a model and mean nothing to `predict`"),
    (["--no-cache", "--cache-dir", "c", "--images", "i"], "--cache-dir: found it with --no-cache"),
    (["--max-export-drop", "2", "--images", "i"], "--max-export-drop: found it without --tflite"),
    (["--fine-tune-layers", "3", "--images", "i"], "--fine-tune-layers: found it without --fine-tune"),
    (["--augment", "--no-cache", "--images", "i"], "--augment: found it with --no-cache"),
])
def test_options_that_would_be_ignored_are_refused(args, text):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert text in result.output and "Traceback" not in result.output


def test_images_without_a_command_still_trains_after_a_global_flag(tmp_path):
    result = invoke("-q", "--images", tmp_path / "missing")
    _one_line_error(result, 1, "is not a folder")


def _skip_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("skipped ")]


@pytest.mark.slow
def test_a_truncated_png_gives_the_same_line_in_extraction_no_cache_and_evaluate(tmp_path, fake_module):
    root = write_images(tmp_path / "imgs", colour_set(n=6))
    bad = root / "red" / "truncated.png"
    bad.write_bytes((root / "red" / "000.png").read_bytes()[:-12])
    lines = []
    for extra in ([], ["--no-cache"]):
        result = invoke("--images", root, "--module", fake_module, "--output", tmp_path / "out", "--epochs", 3,
                        "--image-size", 32, *extra)
        assert result.exit_code == 0, result.output
        lines += _skip_lines(result.output)
        assert "Traceback" not in result.output and "Graph execution" not in result.output
    result = invoke("evaluate", tmp_path / "out", "--images", root)
    assert result.exit_code == 0, result.output
    lines += _skip_lines(result.output)
    assert len(lines) == 3 and len(set(lines)) == 1, lines
    assert lines[0].startswith(f"skipped {bad}: ") and "{{" not in lines[0] and "Error" not in lines[0]
