"""Labels without class folders: --labels FILE.csv, the train/ val/ test/ layout, and byte-identical files.

All through the CLI with --dry-run (no TensorFlow): exit code first, then the one line a user reads.
"""
from __future__ import annotations

import csv

from click.testing import CliRunner
from PIL import Image

from fake_data import colour_set, write_images
from retrain.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result, text):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and text in lines[0], result.output
    assert "Traceback" not in result.output


def _split_rows(out) -> list[dict]:
    with open(out / "runs" / "1" / "split.csv", newline="") as f:
        return list(csv.DictReader(f))


def _flat(tmp_path, n=8):
    """Images in one flat folder (no class folders) and a labels file naming their classes."""
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["path,label"]
    for label, colours in colour_set(n=n).items():
        for i, rgb in enumerate(colours):
            Image.new("RGB", (24, 24), rgb).save(flat / f"{label[0]}{i}.png")
            rows.append(f"{label[0]}{i}.png,{label}")
    return flat, rows


def _labels_file(tmp_path, rows) -> str:
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_labels_file_replaces_class_folders(tmp_path):
    flat, rows = _flat(tmp_path)
    rows[1] = rows[1].replace(",blue", ",green")  # a corrected label: no file moved
    result = invoke("--images", flat, "--labels", _labels_file(tmp_path, rows), "--output", tmp_path / "out",
                    "--dry-run")
    assert result.exit_code == 0, result.output
    found = {row["path"]: row["class"] for row in _split_rows(tmp_path / "out")}
    assert len(found) == 24 and found["b0.png"] == "green" and found["b1.png"] == "blue"


def test_labels_file_split_column_is_kept(tmp_path):
    flat, rows = _flat(tmp_path)
    rows = [rows[0] + ",split"] + [row + (",test" if i % 4 == 0 else ",val" if i % 4 == 1 else ",")
                                    for i, row in enumerate(rows[1:])]
    result = invoke("--images", flat, "--labels", _labels_file(tmp_path, rows), "--output", tmp_path / "out",
                    "--dry-run")
    assert result.exit_code == 0, result.output
    split = {row["path"]: row["split"] for row in _split_rows(tmp_path / "out")}
    given = [row.split(",") for row in rows[1:]]
    assert all(split[p] == {"test": "test", "val": "validation", "": "train"}[s] for p, _, s in given)


def test_labels_file_unknown_path(tmp_path):
    flat, rows = _flat(tmp_path)
    rows.append("nope.png,red")
    _one_line_error(invoke("--images", flat, "--labels", _labels_file(tmp_path, rows), "--dry-run"),
                    "nope.png is not a file under --images")


def test_labels_file_duplicate_row(tmp_path):
    flat, rows = _flat(tmp_path)
    rows.append(rows[3].replace(",", ",", 1))
    _one_line_error(invoke("--images", flat, "--labels", _labels_file(tmp_path, rows), "--dry-run"),
                    "is listed again (first on line 4)")


def test_labels_file_label_with_no_images(tmp_path):
    flat, rows = _flat(tmp_path)
    (flat / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append("broken.png,purple")
    _one_line_error(invoke("--images", flat, "--labels", _labels_file(tmp_path, rows), "--dry-run"),
                    "label purple")


def test_labels_file_path_outside_images(tmp_path):
    flat, rows = _flat(tmp_path)
    Image.new("RGB", (24, 24), (1, 2, 3)).save(tmp_path / "outside.png")
    for bad in ("../outside.png", str(tmp_path / "outside.png")):
        _one_line_error(invoke("--images", flat, "--labels", _labels_file(tmp_path, [*rows, f"{bad},red"]),
                               "--dry-run"), "is outside --images")


def test_labels_file_bad_header_and_missing_file(tmp_path):
    flat, rows = _flat(tmp_path)
    _one_line_error(invoke("--images", flat, "--labels", _labels_file(tmp_path, ["file,class", *rows[1:]]),
                           "--dry-run"), "expected rows path,label[,split]")
    _one_line_error(invoke("--images", flat, "--labels", tmp_path / "none.csv", "--dry-run"), "cannot read")


def test_labels_file_bad_split_and_empty_label(tmp_path):
    flat, rows = _flat(tmp_path)
    bad = [rows[0] + ",split", *(row + ",train" for row in rows[1:-1]), rows[-1] + ",dev"]
    _one_line_error(invoke("--images", flat, "--labels", _labels_file(tmp_path, bad), "--dry-run"), "split 'dev'")
    _one_line_error(invoke("--images", flat, "--labels", _labels_file(tmp_path, [*rows, "b0.png,"]), "--dry-run"),
                    "has an empty label")


def test_train_val_test_layout_is_the_given_split(tmp_path):
    root = tmp_path / "data"
    for name, n in (("train", 10), ("val", 3), ("test", 4)):
        write_images(root / name, colour_set(n=n, seed=len(name)))
    result = invoke("--images", root, "--output", tmp_path / "out", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "using them as the given split" in result.output
    rows = _split_rows(tmp_path / "out")
    assert {row["class"] for row in rows} == {"blue", "green", "red"}
    assert all(row["split"] == {"train": "train", "val": "validation", "test": "test"}[row["path"].split("/")[0]]
               for row in rows)


def test_layout_with_a_class_train_lacks(tmp_path):
    root = tmp_path / "data"
    write_images(root / "train", colour_set(n=6))
    write_images(root / "val", {"blue": [(1, 2, 200)] * 2, "purple": [(120, 0, 120)] * 2})
    _one_line_error(invoke("--images", root, "--dry-run"), "has classes purple that train/ lacks")


def _copies(tmp_path):
    """Colour classes plus 12 files holding the bytes of other files: 6 copies under the same label, and
    one file saved under two labels."""
    root = write_images(tmp_path / "images", colour_set(n=20))
    for i in range(6):
        (root / "red" / f"copy-{i}.png").write_bytes((root / "red" / f"{i:03d}.png").read_bytes())
    (root / "blue" / "stray.png").write_bytes((root / "green" / "000.png").read_bytes())
    return root


def test_byte_identical_files_share_a_split_and_two_labels_are_left_out(tmp_path):
    root = _copies(tmp_path)
    result = invoke("--images", root, "--output", tmp_path / "out", "--dry-run", "--test-split", "0.3")
    assert result.exit_code == 0, result.output
    assert "2 files have the same bytes as a file of another label" in result.output
    split = {row["path"]: row["split"] for row in _split_rows(tmp_path / "out")}
    assert all(split[f"red/copy-{i}.png"] == split[f"red/{i:03d}.png"] for i in range(6))
    assert "blue/stray.png" not in split and "green/000.png" not in split


def test_strict_refuses_two_labels_on_the_same_bytes(tmp_path):
    _one_line_error(invoke("--images", _copies(tmp_path), "--dry-run", "--strict"),
                    "--strict: 2 files have the same bytes")
