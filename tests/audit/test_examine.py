"""The data audit: label errors out of fold, near-copies across splits, outliers, and `retrain check` end to end."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fake_data import colour_set, write_images
from retrain.audit import labels as label_check
from retrain.audit import similarity
from retrain.cli import main


def _clusters(n_per_class=60, classes=4, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), n_per_class)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_flipped_labels_rank_first():
    x, y = _clusters()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), 12, replace=False)
    noisy = y.copy()
    noisy[flipped] = (noisy[flipped] + 1) % 4
    found = label_check.check_labels(x, noisy, 4, [f"d{i}" for i in range(len(y))])
    top = set(np.argsort(-found.score)[:12].tolist())
    assert top == set(flipped.tolist())
    assert np.array_equal(found.suggested[flipped], y[flipped])


def test_copies_share_a_fold():
    folds = label_check.fold_of(["a", "b", "a", "c", "a"], 5)
    assert folds[0] == folds[2] == folds[4] and set(folds) <= set(range(5))


def test_nearest_skips_excluded_pairs_and_finds_the_copy():
    x, _ = _clusters(n_per_class=10)
    queries = x[:3] * 1.1 + 0.01  # scaled copies: cosine ~1
    best, cosine = similarity.nearest(queries, x)
    assert best.tolist() == [0, 1, 2] and np.all(cosine > 0.99)
    best, cosine = similarity.nearest(queries, x, lambda rows: np.eye(3, len(x), dtype=bool)[rows])
    assert np.all(best != np.arange(3)) and np.all(cosine < 0.99)


def test_a_point_far_from_every_class_is_an_outlier():
    x, y = _clusters()
    odd = np.full((1, x.shape[1]), 0.0, np.float32)
    odd[0, 0] = 50.0
    ratio = similarity.outliers(np.vstack([x, odd]), np.append(y, 0), 4)
    assert ratio[-1] > 1.0 and np.mean(ratio[:-1] > 1.0) < 0.05


def _folder(tmp_path):
    """Solid colours with trouble: a copy under two labels, a copy in the same class, a mislabelled image,
    a checkerboard (off-topic) and a tiny image."""
    colours = colour_set(n=24)
    colours["blue"] = colours["blue"] + [(225, 25, 30)]  # red filed under blue
    root = write_images(tmp_path / "images", colours, size=40)
    (root / "green" / "copy.png").write_bytes((root / "red" / "003.png").read_bytes())
    (root / "red" / "again.png").write_bytes((root / "red" / "005.png").read_bytes())
    Image.new("RGB", (6, 6), (215, 35, 25)).save(root / "red" / "tiny.png")
    board = np.indices((40, 40)).sum(0) % 2 * 255
    Image.fromarray(np.stack([board] * 3, -1).astype(np.uint8)).save(root / "green" / "board.png")
    return root


@pytest.mark.slow
def test_check_writes_a_run_folder_with_every_kind(fake_module, tmp_path):
    root = _folder(tmp_path)
    result = CliRunner().invoke(main, ["check", "--images", str(root), "--module", str(fake_module),
                                       "--output", str(tmp_path / "out"), "--image-size", "32", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    run = tmp_path / "out" / "runs" / "1"
    assert found["run"] == str(run) and not (tmp_path / "out" / "saved_model" / "1").exists()
    with open(run / "data_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "kind", "score", "suggested_label", "partner"]
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    exact = {row["path"]: row for row in by_kind["exact_duplicate"]}
    assert exact["green/copy.png"]["suggested_label"] == "red" and exact["green/copy.png"]["partner"] == "red/003.png"
    assert {"red/again.png", "red/005.png"} <= set(exact)
    assert by_kind["label_error"][0]["path"] == "blue/024.png"
    assert by_kind["label_error"][0]["suggested_label"] == "red"
    assert len(by_kind["label_error"]) >= 0.1 * 76
    assert [row["path"] for row in by_kind["small_image"]] == ["red/tiny.png"]
    assert "green/board.png" in [row["path"] for row in by_kind["outlier"]]
    scores = [float(row["score"]) for row in by_kind["label_error"]]
    assert scores == sorted(scores, reverse=True)
    assert found["data"]["conflicts"] == 2 and found["data"]["small_image"] == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"] == found["data"] and metrics["balance"]["blue"] == 25
    assert "Data" in (run / "report.html").read_text()


@pytest.mark.slow
def test_a_training_run_writes_the_audit_to_its_run_folder(fake_module, tmp_path):
    root = _folder(tmp_path)
    result = CliRunner().invoke(main, ["--images", str(root), "--module", str(fake_module), "--epochs", "5",
                                       "--output", str(tmp_path / "out"), "--image-size", "32"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "out" / "runs" / "1"
    assert "data: 4 exact duplicates (2 under two labels, 0 across splits)" in result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["exact_duplicate"] == 4 and metrics["data"]["small_image"] == 1
    assert (run / "data_issues.csv").read_text().count("\n") == sum(
        metrics["data"][k] for k in ("exact_duplicate", "near_duplicate", "label_error", "outlier", "small_image")) + 1
    assert '<section id="data">' in (run / "report.html").read_text()
