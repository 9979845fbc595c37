"""What a run and `evaluate` leave for people and machines: split.csv, metrics.json, reports, the gate."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from fake_data import colour_set, random_label_set, write_images
from retrain.cli import main

REPORT_FILES = {"labels.txt", "split.csv", "metrics.json", "run.json", "report.html", "confusion_matrix.csv",
                "confusion_matrix.png", "misclassified.csv", "history.csv", "training.png"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory, fake_module):
    root = tmp_path_factory.mktemp("reports")
    images = write_images(root / "imgs", colour_set(n=20))
    result = invoke("--images", images, "--module", fake_module, "--output", root / "out", "--image-size", 32,
                    "--epochs", 40, "--json", "--tensorboard", root / "tb")
    assert result.exit_code == 0, result.output
    return root, images, json.loads(result.stdout)


def _split_rows(run_dir):
    with open(run_dir / "split.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_default_run_writes_every_report_and_a_json_summary(run):
    root, _, summary = run
    run_dir = root / "out" / "runs" / "1"
    assert REPORT_FILES <= {p.name for p in run_dir.iterdir()}
    assert summary["published"] and summary["focus"] == "test" and summary["model"].endswith("saved_model/1")
    assert list((root / "tb").iterdir()) == [root / "tb" / "run-1"]
    card = json.loads((run_dir / "run.json").read_text("utf-8"))
    assert card["classes"] == ["blue", "green", "red"] and len(card["data_fingerprint"]) == 64
    assert card["versions"]["tensorflow"] and card["options"]["image_size"] == 32


def test_split_csv_and_metrics_agree(run):
    root, _, summary = run
    run_dir = root / "out" / "runs" / "1"
    rows = _split_rows(run_dir)
    assert {r["split"] for r in rows} == {"train", "validation", "test"} and len(rows) == 60
    metrics = json.loads((run_dir / "metrics.json").read_text("utf-8"))
    test_size = sum(r["split"] == "test" for r in rows)
    assert np.sum(metrics["test"]["confusion"]) == test_size == metrics["test"]["count"]
    assert metrics["val_accuracy"] == metrics["validation"]["accuracy"] and "train_counts" in metrics
    confusion_csv = list(csv.reader((run_dir / "confusion_matrix.csv").open(encoding="utf-8")))
    assert confusion_csv[0] == ["", "blue", "green", "red"]
    assert sum(int(c) for row in confusion_csv[1:] for c in row[1:]) == test_size


def test_the_exported_model_scores_the_test_files_as_metrics_json_says(run, tmp_path):
    root, images, _ = run
    run_dir = root / "out" / "runs" / "1"
    test_dir = tmp_path / "test"
    for row in _split_rows(run_dir):
        if row["split"] == "test":
            (test_dir / row["class"]).mkdir(parents=True, exist_ok=True)
            (test_dir / row["class"] / row["path"].replace("/", "_")).write_bytes((images / row["path"]).read_bytes())
    result = invoke("evaluate", root / "out", "--images", test_dir, "--json")
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    metrics = json.loads((run_dir / "metrics.json").read_text("utf-8"))
    assert evaluation["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    eval_dir = run_dir / f"eval-{test_dir.name}"
    assert json.loads((eval_dir / "metrics.json").read_text("utf-8"))["test"]["accuracy"] == evaluation["accuracy"]
    assert (eval_dir / "report.html").is_file() and (eval_dir / "confusion_matrix.csv").is_file()


@pytest.mark.slow
def test_the_gate_holds_a_model_back_and_keeps_it(tmp_path, fake_module):
    images = write_images(tmp_path / "imgs", random_label_set(n=12))  # labels nothing can learn
    out = tmp_path / "out"
    result = invoke("--images", images, "--module", fake_module, "--output", out, "--image-size", 32,
                    "--epochs", 5, "--min-accuracy", 0.999)
    assert result.exit_code == 3, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--min-accuracy" in errors[0] and "not published" in errors[0]
    assert not [p for p in (out / "saved_model").iterdir()], "a held-back model must not reach the base path"
    kept = out / "runs" / "1" / "saved_model"
    assert (kept / "saved_model.pb").is_file() and (out / "runs" / "1" / "report.html").is_file()
    assert json.loads((out / "runs" / "1" / "metrics.json").read_text("utf-8"))["published"] is False


@pytest.mark.slow
def test_a_separate_test_folder_and_unknown_classes(tmp_path, fake_module):
    images = write_images(tmp_path / "imgs", colour_set(n=8))
    tests = write_images(tmp_path / "tests", {"red": [(220, 30, 30)] * 3, "blue": [(20, 40, 230)] * 2})
    result = invoke("--images", images, "--module", fake_module, "--output", tmp_path / "out", "--image-size", 32,
                    "--epochs", 30, "--test-images", tests, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["test"] == {"blue": 2, "green": 0, "red": 3}
    write_images(tests, {"zebra": [(1, 1, 1)]})
    result = invoke("--images", images, "--module", fake_module, "--output", tmp_path / "out", "--test-images", tests)
    assert result.exit_code == 1 and "--test-images: folders zebra are not classes of --images" in result.output
