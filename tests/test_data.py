"""Folder scanning, format sniffing and the stable split."""
from __future__ import annotations

import shutil

import pytest
from PIL import Image

from conftest import colour_set, write_images
from retrain import data
from retrain.errors import RetrainError


def test_labels_are_sorted_folder_names_and_nested_images_count(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=3))
    nested = root / "red" / "deeper" / "more"
    nested.mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(nested / "x.png")
    labels, examples = data.scan(root)
    assert labels == ["blue", "green", "red"]
    assert sum(e.label == 2 for e in examples) == 4
    assert "red/deeper/more/x.png" in {e.rel for e in examples}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP"])
def test_formats_are_recognised_by_content_not_extension(tmp_path, fmt):
    path = tmp_path / "misnamed.txt"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path, fmt)
    assert data.sniff(path) == fmt.lower()


def test_non_images_and_hidden_files_are_skipped(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=2))
    (root / "red" / "notes.jpg").write_text("not an image")
    (root / "red" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".hidden_class").mkdir()
    labels, examples = data.scan(root)
    assert labels == ["blue", "green", "red"] and len(examples) == 6


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "is not a folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no class sub-folders"),
    (lambda p: write_images(p / "one", {"cat": [(1, 2, 3)]}), "expected at least 2 class folders"),
])
def test_bad_folders_get_one_line_errors(tmp_path, make, message):
    with pytest.raises(RetrainError, match=message) as info:
        data.scan(make(tmp_path))
    assert "\n" not in str(info.value)


def test_class_without_images_is_named(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=2))
    shutil.rmtree(root / "green")
    (root / "green").mkdir()
    (root / "green" / "readme.txt").write_text("hi")
    with pytest.raises(RetrainError, match=r"green has no images \(1 other files\)"):
        data.scan(root)


def test_split_is_stable_when_images_are_added_or_the_folder_moves(tmp_path):
    root = write_images(tmp_path / "a", colour_set(n=40))
    _, before = data.split(*data.scan(root)[1:], 0.25)
    moved = tmp_path / "b"
    shutil.copytree(root, moved)
    write_images(moved, {label: [(9, 9, 9)] * 45 for label in ("blue", "green", "red")})  # adds 5 new each
    train_after, val_after = data.split(data.scan(moved)[1], 0.25)
    val_before = {e.rel for e in before}
    assert val_before <= {e.rel for e in val_after}
    assert not val_before & {e.rel for e in train_after}
    assert 0.1 < len(val_after) / (len(val_after) + len(train_after)) < 0.4


def test_split_keeps_every_class_on_both_sides(tmp_path):
    root = write_images(tmp_path / "imgs", {"a": [(1, 1, 1)] * 2, "b": [(2, 2, 2)] * 3, "c": [(3, 3, 3)]})
    train, val = data.split(data.scan(root)[1], 0.01)
    assert {e.label for e in train} == {0, 1, 2}
    assert {e.label for e in val} == {0, 1}
