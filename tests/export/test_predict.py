"""predict: which version a path means, and one ordered result per file, errors included."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import tensorflow as tf

from retrain.errors import RetrainError
from retrain.export.predict import find_version, predict
from serving_fixture import LABELS


@pytest.fixture(scope="module")
def run_dir(serving_export):
    """The shared export's run folder: <run>/saved_model/1/."""
    return serving_export.version_dir.parent.parent


@pytest.fixture(scope="module")
def files(serving_export, tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict-files")
    names = {"photo.jpg": "jpeg", "small.png": "png_small", "anim.webp": "animated_webp_0",
             "notes.jpg": "bad_text", "huge.png": "huge_png", "gray.jpg": "gray_jpeg"}
    for file_name, sample in names.items():
        (folder / file_name).write_bytes(serving_export.samples[sample])
    return folder


def test_find_version_accepts_run_folder_base_and_version(run_dir, serving_export):
    version = serving_export.version_dir
    assert find_version(run_dir) == version
    assert find_version(run_dir / "saved_model") == version
    assert find_version(version) == version


def test_find_version_picks_the_highest_complete_number(serving_export, tmp_path):
    base = tmp_path / "run" / "saved_model"
    for name in ["2", "10", "9"]:
        shutil.copytree(serving_export.version_dir, base / name)
    (base / ".tmp-11-123").mkdir()
    (base / "12").mkdir()  # no saved_model.pb: not a version
    (base / "latest").mkdir()
    assert find_version(tmp_path / "run") == base / "10"


def test_find_version_says_what_it_expected(tmp_path):
    with pytest.raises(RetrainError, match="found no SavedModel in .*expected a run folder"):
        find_version(tmp_path)


def test_predict_keeps_order_and_reports_bad_files_in_one_line(run_dir, files):
    paths = [files / n for n in ["photo.jpg", "notes.jpg", "anim.webp", "missing.png", "huge.png", "small.png"]]
    results = predict(run_dir, paths, top_k=2)
    assert [r["path"] for r in results] == [str(p) for p in paths]
    good, bad = ["path", "predictions"], ["error", "path"]
    assert [sorted(r) for r in results] == [good, bad, bad, bad, bad, good]
    errors = [r["error"] for r in results[1:5]]
    assert "not a JPEG, PNG, GIF, BMP or WebP" in errors[0] and "animated WebP" in errors[1]
    assert "cannot read" in errors[2] and "400000000 pixels" in errors[3]
    assert all("\n" not in e and "{{" not in e and "assertion failed" not in e for e in errors)


def test_predictions_are_ranked_labels_with_the_served_scores(run_dir, files, serving_export):
    [result] = predict(run_dir, [files / "photo.jpg"], top_k=10)
    loaded = tf.saved_model.load(str(serving_export.version_dir))
    served = loaded.signatures["serving_default"](image_bytes=tf.constant([serving_export.samples["jpeg"]]))
    scores = served["scores"].numpy()[0]
    assert [p["label"] for p in result["predictions"]] == [LABELS[i] for i in np.argsort(-scores)]
    np.testing.assert_allclose([p["score"] for p in result["predictions"]], np.sort(scores)[::-1], atol=1e-6)
    assert all(isinstance(p["score"], float) for p in result["predictions"])


def test_top_k_must_be_positive(run_dir, files):
    with pytest.raises(RetrainError, match="--top-k"):
        predict(run_dir, [files / "photo.jpg"], top_k=0)


def test_no_images_gives_no_results(run_dir):
    assert predict(run_dir, []) == []
