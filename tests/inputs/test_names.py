"""Names as data: every CSV reads back to the exact names, log lines stay one line, class names are plain text.

A file name may hold anything but '/' and NUL: commas, quotes, CR, LF, escape sequences, bytes that are
not UTF-8 (surrogate escapes in Python). Class names become labels.txt lines and model strings, so a
class name must be one line of UTF-8; it is drawn and written as plain text everywhere.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from retrain.cli import main
from retrain.errors import RetrainError, skip_line
from retrain.inputs import scan, skipped, split
from retrain.reports import plots, writers

SETTINGS = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# What a file system allows in a name: anything but '/' and NUL, and bytes that are not UTF-8.
_TEXT = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=12)
_BYTES = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b).map(os.fsdecode)
NAMES = st.one_of(_TEXT, _BYTES, st.sampled_from(["a\rb", "a\nb", "\r\n", "=1+1", "-x", "@SUM(A1)", '"q",', " x "]))


def read_back(path: Path) -> list[list[str]]:
    """The contract in README: the csv module, UTF-8 with surrogate escapes, newline=''."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        return list(csv.reader(handle))


@SETTINGS
@given(names=st.lists(NAMES, min_size=1, max_size=6), reason=_TEXT)
def test_skipped_csv_reads_back_to_the_exact_names(tmp_path, names, reason):
    rows = [(f"class/{name}", f"corrupt: {reason}") for name in names]
    skipped.write_skipped_csv(tmp_path / "skipped.csv", rows)
    assert read_back(tmp_path / "skipped.csv") == [["path", "reason"]] + [list(row) for row in rows]


@SETTINGS
@given(names=st.lists(NAMES, min_size=1, max_size=6, unique=True), labels=st.lists(_TEXT, min_size=2, max_size=3,
                                                                                     unique=True))
def test_split_csv_reads_back_to_the_exact_names(tmp_path, names, labels):
    examples = [scan.Example(Path("/x"), f"{labels[i % 2]}/{name}", i % 2) for i, name in enumerate(names)]
    split.write_split_csv(tmp_path / "split.csv", {"train": examples[::2], "validation": examples[1::2]}, labels)
    expected = [["path", "class", "split"]] + [[e.rel, labels[e.label], "train"] for e in examples[::2]] \
        + [[e.rel, labels[e.label], "validation"] for e in examples[1::2]]
    assert read_back(tmp_path / "split.csv") == expected


@SETTINGS
@given(names=st.lists(NAMES, min_size=1, max_size=5), labels=st.lists(NAMES, min_size=2, max_size=3, unique=True))
def test_misclassified_and_confusion_csvs_read_back_to_the_exact_names(tmp_path, names, labels):
    rows = [(name, labels[0], labels[1], 0.5) for name in names]
    writers.write_misclassified_csv(tmp_path / "misclassified.csv", rows)
    assert [r[:3] for r in read_back(tmp_path / "misclassified.csv")[1:]] == [list(r[:3]) for r in rows]
    writers.write_confusion_csv(tmp_path / "confusion.csv", np.eye(len(labels), dtype=int), labels)
    table = read_back(tmp_path / "confusion.csv")
    assert table[0][1:] == labels and [row[0] for row in table[1:]] == labels


@SETTINGS
@given(name=NAMES, reason=_TEXT)
def test_a_skip_is_one_line_whatever_the_name(name, reason):
    line = skip_line(f"images/class/{name}", f"corrupt: {reason}")
    assert len(line.splitlines()) == 1 and not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", line)
    line.encode("utf-8")  # printable anywhere


def _write(folder: Path, name: str, data: bytes) -> None:
    with open(os.path.join(os.fsencode(folder), os.fsencode(name)), "wb") as handle:
        handle.write(data)


def _png(rgb=(9, 9, 9)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buffer, "PNG")
    return buffer.getvalue()


FORGING = ["new\nline.png", "carriage\rreturn.jpg", "\r\nboth.png", "tab\there.png", "esc\x1b[2Jcls.png",
           "caf\udce9.png", "=HYPERLINK(1).png", "nel\x85.png", "sep\u2028.png"]


def test_a_real_scan_writes_and_logs_every_forging_name_exactly_once(tmp_path, caplog):
    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i, name in enumerate(FORGING):
            _write(images / label, name, _png() if i % 2 else b"not an image")
    with caplog.at_level(logging.INFO):
        found = scan.scan(images, 10**6)
    skipped.write_skipped_csv(tmp_path / "skipped.csv", found.skipped)
    split.write_split_csv(tmp_path / "split.csv", {"train": found.examples}, found.labels)
    assert [row[0] for row in read_back(tmp_path / "skipped.csv")[1:]] == [rel for rel, _ in found.skipped]
    assert [row[0] for row in read_back(tmp_path / "split.csv")[1:]] == [e.rel for e in found.examples]
    assert {rel.split("/", 1)[1] for rel, _ in found.skipped} | {e.rel.split("/", 1)[1] for e in found.examples} \
        == set(FORGING)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert len(lines) == len(found.skipped)
    assert all(len(line.splitlines()) == 1 and "\r" not in line and "\x1b" not in line for line in lines)


@pytest.mark.parametrize("label", ["new\nline", "cr\rhere", "tab\there", "del\x7f", "nel\x85", "sep\u2028",
                                   "bell\x07", "caf\udce9"])
def test_class_names_that_cannot_be_one_line_of_utf8_are_refused_naming_the_folder(tmp_path, label):
    images = tmp_path / "images"
    for name in (label, "plain"):
        os.makedirs(os.path.join(os.fsencode(images), os.fsencode(name)))
        _write(images / name, "x.png", _png())
    with pytest.raises(RetrainError) as error:
        scan.scan(images, 10**6)
    message = str(error.value)
    assert len(message.splitlines()) == 1 and "class folder" in message and "expected" in message
    result = CliRunner().invoke(main, ["--images", str(images), "--output", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output


MATH = ["$\\alpha$", "a$b$c", "$\\frac{", "back\\slash", "$$", "_^{}", "$x", "\\$", "50% $5 & $6"]


def test_class_names_like_math_text_are_drawn_as_plain_text(tmp_path):
    plots.confusion_png(tmp_path / "matrix.png", np.eye(len(MATH), dtype=int) * 3, MATH)
    assert Image.open(tmp_path / "matrix.png").size[0] > 100
    from matplotlib.figure import Figure

    figure = Figure()
    ax = figure.subplots()
    plots._matrix_panel(ax, np.eye(len(MATH)), MATH, "t", ".2f", 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == [plots.short(m) for m in MATH]
    assert not any(t.get_parse_math() for t in ax.get_xticklabels() + ax.get_yticklabels())


@pytest.mark.slow
def test_a_report_that_fails_publishes_nothing(tmp_path, fake_module, monkeypatch):
    from fake_data import colour_set, write_images

    def mathtext_error(*args, **kwargs):
        raise ValueError("ParseException: Expected end of text, found '$'")  # what matplotlib raised on "$\\x$"

    monkeypatch.setattr(plots, "confusion_png", mathtext_error)
    images = write_images(tmp_path / "images", colour_set(6))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--images", str(images), "--module", str(fake_module), "--output", str(out),
                                       "--image-size", "16", "--epochs", "3"])
    assert result.exit_code == 1
    assert not list((out / "saved_model").iterdir())  # no published version
    assert not (out / "runs" / "1" / "labels.txt").exists() and not (out / "runs" / "1" / "metrics.json").exists()
