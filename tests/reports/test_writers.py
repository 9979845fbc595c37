"""Report writers: CSV layouts, atomic writes, the fingerprint, pictures and a self-contained, escaped page."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from fake_data import write_images
from retrain.reports import writers
from retrain.reports.html import thumbnail_jpeg
from retrain.reports.writers import Scored, write_report_files

TRICKY = ['a "quoted" <b>tag & more', "naïve café ☕", "plain"]


def read_csv(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_confusion_csv_layout(tmp_path):
    writers.write_confusion_csv(tmp_path / "c.csv", np.array([[2, 1], [0, 3]]), ["x,1", "y"])
    assert read_csv(tmp_path / "c.csv") == [["", "x,1", "y"], ["x,1", "2", "1"], ["y", "0", "3"]]


def test_misclassified_csv_is_sorted_by_score(tmp_path):
    writers.write_misclassified_csv(tmp_path / "m.csv", [("a/1.png", "a", "b", 0.5), ("b/2.png", "b", "a", 0.9)])
    assert read_csv(tmp_path / "m.csv") == [["path", "true", "predicted", "score"],
                                             ["b/2.png", "b", "a", "0.900000"], ["a/1.png", "a", "b", "0.500000"]]


def test_history_csv(tmp_path):
    writers.write_history_csv(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.5, "accuracy": 0.75, "val_loss": 0.6,
                                                   "val_accuracy": 0.7}])
    assert read_csv(tmp_path / "h.csv") == [["epoch", "loss", "accuracy", "val_loss", "val_accuracy"],
                                             ["1", "0.5", "0.75", "0.6", "0.7"]]


def test_write_json_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    writers.write_json(tmp_path / "run.json", {"n": np.int64(3), "x": np.float32(0.5), "p": tmp_path})
    assert json.loads((tmp_path / "run.json").read_text()) == {"n": 3, "x": 0.5, "p": str(tmp_path)}
    writers.write_json(tmp_path / "run.json", {})
    assert json.loads((tmp_path / "run.json").read_text()) == {}
    with pytest.raises(TypeError):
        writers.write_json(tmp_path / "run.json", {"bad": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert (tmp_path / "run.json").read_text() == "{}\n"


def test_data_fingerprint_follows_the_split_and_every_file(tmp_path):
    (tmp_path / "split.csv").write_text("path,class,split\na/1.png,a,train\n")
    first = writers.data_fingerprint(tmp_path / "split.csv", ["aa", "bb"])
    assert writers.data_fingerprint(tmp_path / "split.csv", ["bb", "aa"]) == first   # order does not matter
    assert writers.data_fingerprint(tmp_path / "split.csv", ["aa", "bc"]) != first   # an edited file does
    (tmp_path / "split.csv").write_text("path,class,split\na/1.png,a,test\n")
    assert writers.data_fingerprint(tmp_path / "split.csv", ["aa", "bb"]) != first   # and the split does


def test_thumbnails_ignore_exif_and_keep_16_bit_contrast(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": TensorFlow ignores it, so the thumbnail must too
    Image.new("RGB", (200, 100), (200, 30, 60)).save(tmp_path / "wide.jpg", exif=exif.tobytes())
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(tmp_path / "wide.jpg")))
    assert thumb.size == (96, 48) and not thumb.getexif()
    Image.fromarray(np.full((10, 10), 40000, np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(io.BytesIO(thumbnail_jpeg(tmp_path / "deep.png"))).getpixel((5, 5))[0] in range(150, 160)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert thumbnail_jpeg(tmp_path / "broken.png") is None


def scored_split(images, labels, seed: int) -> Scored:
    """Every image of the folder with scores that are mostly right (about one in four wrong)."""
    paths = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png"))
    y = np.array([labels.index(p.split("/")[0]) for p in paths])
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), len(labels))) + 2.0 * np.eye(len(labels))[y]
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Scored(y, scores, paths)


def test_write_reports_writes_every_file_and_escapes_labels(tmp_path):
    images = write_images(tmp_path / "images", {label: [(i * 20, 90, 200 - i * 20) for i in range(8)]
                                                for label in TRICKY})
    labels = sorted(TRICKY)
    history = [{"epoch": e, "loss": 1 / e, "accuracy": 1 - 1 / (e + 1), "val_loss": 1.2 / e,
                "val_accuracy": 0.9 - 1 / (e + 2)} for e in range(1, 8)]
    splits = {"train": scored_split(images, labels, 0), "test": scored_split(images, labels, 1)}
    run = tmp_path / "run"
    run.mkdir()
    summaries = write_report_files(run, labels=labels, splits=splits, judged="test", images_root=images,
                                   facts={"module": "<fake>", "classes": labels}, history=history, kept_epoch=5)
    assert sorted(p.name for p in run.iterdir()) == ["confusion_matrix.csv", "confusion_matrix.png", "history.csv",
                                                      "misclassified.csv", "report.html", "training.png"]
    assert set(summaries) == {"train", "test"}
    assert np.array(summaries["test"]["confusion"]).sum() == len(splits["test"].y_true)
    wrong = read_csv(run / "misclassified.csv")[1:]
    assert len(wrong) == round(len(splits["test"].y_true) * (1 - summaries["test"]["accuracy"]))
    page = (run / "report.html").read_text("utf-8")
    assert "<b>tag" not in page and "&quot;quoted&quot; &lt;b&gt;tag &amp; more" in page and "naïve café ☕" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing loaded from outside the page
    assert page.count('src="data:image/png;base64,') == 2 and page.count("data:image/jpeg") == len(wrong[:24])
    for png in ("confusion_matrix.png", "training.png"):
        assert Image.open(run / png).size[0] >= 800


def test_run_card_carries_versions_and_the_callers_sections(tmp_path):
    card = writers.run_card(module="m", metrics={"test": {"accuracy": 0.5}})
    assert list(card)[:2] == ["created", "versions"] and card["module"] == "m"
    assert card["versions"]["tensorflow"].startswith("2.21") and card["created"].endswith("+00:00")
    writers.write_json(tmp_path / "run.json", card)
    assert json.loads((tmp_path / "run.json").read_text())["metrics"]["test"]["accuracy"] == 0.5
