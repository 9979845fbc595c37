"""Folder scanning (messy folders, symlinks, skip reasons, skipped.csv) and the stable split."""
from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from corpus import build_corpus
from fake_data import colour_set, write_images
from retrain.errors import RetrainError
from retrain.inputs import scan as scanning
from retrain.inputs.split import split_examples

BIG = 50_000_000


def scan(root, max_pixels=BIG):
    return scanning.scan(root, max_pixels)


@pytest.fixture
def messy(tmp_path):
    """Good images plus one file of every messy case: (root, expectations)."""
    root = write_images(tmp_path / "imgs", colour_set(n=4))
    return root, build_corpus(root, ["blue", "green", "red"])


def test_labels_are_sorted_folder_names_and_nested_images_count(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=3))
    nested = root / "red" / "deeper" / "more"
    nested.mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(nested / "x.png")
    found = scan(root)
    assert found.labels == ["blue", "green", "red"]
    assert sum(e.label == 2 for e in found.examples) == 4
    assert "red/deeper/more/x.png" in {e.rel for e in found.examples}
    assert found.skipped == [] and found.ignored == 0


def test_messy_corpus_skips_exactly_the_broken_files_and_keeps_every_usable_one(messy):
    root, expected = messy
    found = scan(root)
    assert {rel for rel, _ in found.skipped} == expected["expected_skipped"]
    assert expected["expected_kept"] <= {e.rel for e in found.examples}
    assert len(found.examples) == len(expected["expected_kept"]) + 12  # the 12 good images
    assert all(reason and "\n" not in reason for _, reason in found.skipped)
    assert found.ignored >= 3 * 7  # each class holds the debris set: counted, not listed


@pytest.mark.parametrize("name, reason", [
    ("empty.jpg", "empty file: 0 bytes"),
    ("truncated.png", "truncated: PNG"),
    ("truncated.jpg", "truncated: JPEG image data has no end marker"),
    ("random-bytes.jpg", "not an image: found unknown bytes"),
    ("text.png", "not an image: found text"),
    ("scan.tiff", "unsupported format (TIFF): the served model cannot decode it; convert to PNG or JPEG"),
    ("photo.heic", "unsupported format (HEIC/HEIF)"),
    ("photo.avif", "unsupported format (AVIF)"),
    ("photo.jxl", "unsupported format (JPEG XL)"),
    ("moving.webp", "unsupported format (animated WebP)"),
    ("huge-header.png", "too large: 20000 x 20000 = 400000000 pixels, expected at most 50000000"),
    ("loop", "symlink loop"),
    ("self-link.jpg", "symlink loop"),
    ("broken-link.jpg", "broken symlink"),
    ("shared.png", "ambiguous: the same file is in classes blue and green"),
    ("README.txt", "not in a class folder"),
])
def test_each_skip_has_its_reason(messy, name, reason):
    found = [why for rel, why in scan(messy[0]).skipped if rel.rpartition("/")[2] == name]
    assert found and all(why.startswith(reason) for why in found), found


def test_links_are_followed_and_each_real_file_used_once(messy):
    found = scan(messy[0])
    rels = {e.rel for e in found.examples}
    assert {"green/linked-folder/one.png", "green/linked-folder/two.jpg", "blue/dup-a.png"} <= rels
    assert "blue/dup-b.png" not in rels and "blue/dup-b.png" not in dict(found.skipped)
    assert len({e.path for e in found.examples}) == len(found.examples)
    assert all(e.path.is_absolute() and not e.path.is_symlink() for e in found.examples)


def test_pixel_limit_comes_from_the_header(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=2), size=30)
    Image.new("RGB", (40, 30)).save(root / "red" / "wide.png")
    found = scan(root, max_pixels=900)
    assert dict(found.skipped) == {"red/wide.png": "too large: 40 x 30 = 1200 pixels, expected at most 900"}


def test_non_utf8_names_survive_the_scan_the_split_and_the_csv(messy, tmp_path):
    root, _ = messy
    found = scan(root)
    odd = next(e for e in found.examples if "\udce9" in e.rel)
    assert os.fsencode(odd.rel).endswith(b"caf\xe9-latin1-name.png") and odd.path.exists()
    split_examples(found.examples, found.labels)
    out = tmp_path / "skipped.csv"
    scanning.write_skipped_csv(out, found.skipped + [(odd.rel, "example")])
    rows = list(csv.reader(out.open(encoding="utf-8", errors="surrogateescape", newline="")))
    assert rows[0] == ["path", "reason"] and [odd.rel, "example"] in rows  # the exact name, its byte included


def test_skipped_csv_round_trips_odd_names_and_leaves_no_temporary_file(tmp_path):
    skipped = [("a/with, comma.png", 'says "hi"'), ("b/ünï\ncode.jpg", "empty file: 0 bytes")]
    scanning.write_skipped_csv(tmp_path / "skipped.csv", skipped)
    rows = list(csv.reader((tmp_path / "skipped.csv").open(encoding="utf-8", newline="")))
    assert rows == [["path", "reason"], *map(list, skipped)]
    assert os.listdir(tmp_path) == ["skipped.csv"]


def test_summary_counts_once_and_each_skip_gets_its_line(messy, caplog):
    caplog.set_level(logging.DEBUG, logger="retrain.inputs.scan")
    scan(messy[0])
    summary = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(summary) == 1
    skipped = len(messy[1]["expected_skipped"])
    assert f"skipped {skipped}:" in summary[0].message and "8 truncated" in summary[0].message
    assert "1 unsupported format (TIFF)" in summary[0].message and "ignored" in summary[0].message
    lines = [r.message for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == skipped and all(line.startswith(f"skipped {messy[0]}/") for line in lines)


def test_scan_runs_without_tensorflow(messy):
    code = ("import sys; from retrain.inputs import scan; scan.scan(sys.argv[1], 10**8); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code, str(messy[0])], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "is not a folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no class sub-folders"),
    (lambda p: write_images(p / "one", {"cat": [(1, 2, 3)]}), "expected at least 2 class folders"),
])
def test_bad_folders_get_one_line_errors(tmp_path, make, message):
    with pytest.raises(RetrainError, match=message) as info:
        scan(make(tmp_path))
    assert "\n" not in str(info.value)


def test_class_left_empty_after_skips_is_named_with_its_reasons(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=2))
    shutil.rmtree(root / "green")
    (root / "green").mkdir()
    (root / "green" / "readme.txt").write_text("hi")
    (root / "green" / "a.jpg").write_bytes(b"")
    (root / "green" / "b.jpg").write_bytes(b"")
    (root / "green" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(RetrainError, match=r"green has no usable images \(3 skipped: 2 empty file, 1 not an image\)"):
        scan(root)


def test_hidden_class_folders_and_debris_folders_are_not_classes(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=2))
    (root / ".hidden_class").mkdir()
    (root / "__MACOSX").mkdir()
    assert scan(root).labels == ["blue", "green", "red"]


def test_class_folder_without_files_is_named(tmp_path):
    root = write_images(tmp_path / "imgs", colour_set(n=2))
    (root / "zebra").mkdir()
    (root / "zebra" / "Thumbs.db").write_bytes(b"\0")
    with pytest.raises(RetrainError, match=r"zebra has no images \(no files\); expected JPEG, PNG, GIF, BMP or still"):
        scan(root)
