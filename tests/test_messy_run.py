"""A whole run on a messy folder: broken files are skipped with reasons, the rest trains as well as clean data.

The fake module sees mean colour, so accuracy on solid colours measures whether the good files were
all used and the broken ones kept out, not how good a backbone is.
"""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from corpus import build_corpus
from fake_data import COLOURS, colour_set, write_images
from retrain.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def accuracy_of(images, fake_module, out, tests) -> float:
    result = invoke("--images", images, "--module", fake_module, "--output", out, "--image-size", 24,
                    "--test-images", tests, "--epochs", 60, "--learning-rate", 0.05, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["accuracy"]["test"]


@pytest.mark.slow
def test_a_messy_folder_trains_as_well_as_its_good_images_and_names_exactly_the_broken_ones(tmp_path, fake_module):
    tests = write_images(tmp_path / "tests", colour_set(n=20, seed=9))
    clean = write_images(tmp_path / "clean", colour_set(n=50))
    messy = write_images(tmp_path / "messy", colour_set(n=50))
    corpus = build_corpus(messy, sorted(COLOURS), colours=COLOURS)
    clean_accuracy = accuracy_of(clean, fake_module, tmp_path / "clean-out", tests)
    messy_accuracy = accuracy_of(messy, fake_module, tmp_path / "messy-out", tests)
    assert messy_accuracy >= clean_accuracy - 0.01
    with open(tmp_path / "messy-out" / "runs" / "1" / "skipped.csv", newline="", encoding="utf-8",
              errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"] for row in rows} == corpus["expected_skipped"]  # exact names (README: CSV files)
    assert all(row["reason"] for row in rows)


def test_strict_refuses_and_dry_run_stops_before_any_module(tmp_path):
    images = write_images(tmp_path / "imgs", colour_set(n=4))
    (images / "red" / "notes.jpg").write_text("not an image")
    result = invoke("--images", images, "--output", tmp_path / "out", "--strict")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert errors[0].startswith("Error: --strict: 1 files would be skipped") and "red/notes.jpg" in errors[0]
    result = invoke("--images", images, "--output", tmp_path / "out", "--module", "no-such-module", "--dry-run")
    assert result.exit_code == 0, result.output  # the module is never resolved
    run_dir = tmp_path / "out" / "runs" / "1"
    assert (run_dir / "skipped.csv").read_text("utf-8").splitlines()[1].startswith("red/notes.jpg,not an image")
    assert len((run_dir / "split.csv").read_text("utf-8").splitlines()) == 13
    assert not list((tmp_path / "out" / "saved_model").iterdir())
