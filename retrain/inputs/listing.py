"""Labels without class folders: a `--labels FILE.csv` of `path,label[,split]` rows, and the `train/ val/ test/`
layout of downloaded data sets (each holding class folders), whose folders are taken as the given split.

Paths in the file are relative to --images, so a user corrects a label by editing one cell instead of
moving a file (data_issues.csv suggests which). No TensorFlow here.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path, PurePosixPath

from retrain.errors import RetrainError
from retrain.inputs import formats
from retrain.inputs.scan import Example, Scan, counts
from retrain.inputs.walk import is_debris

log = logging.getLogger(__name__)
SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
EXPECTED = "expected rows path,label[,split] with paths relative to --images"


def layout(images: Path) -> dict[str, Path] | None:
    """{split: folder} when images holds only train/ and val/, validation/ or test/ folders; else None."""
    if not Path(images).is_dir():
        return None
    folders = {p.name.lower(): p for p in Path(images).iterdir() if p.is_dir() and not is_debris(p.name, True)}
    if "train" not in folders or len(folders) < 2 or not set(folders) <= set(SPLIT_NAMES):
        return None
    if "val" in folders and "validation" in folders:
        raise RetrainError(f"--images: {images} has both val/ and validation/; expected one validation folder")
    return {SPLIT_NAMES[name]: path for name, path in folders.items()}


def read(images: Path, table: Path, max_pixels: int) -> tuple[Scan, dict[str, str]]:
    """(Scan of the listed files, {rel: split} of rows naming a split) from a labels file.

    Raises RetrainError, one line naming the file and line, for an unreadable file, a header without
    path and label, an empty cell, a path outside --images or naming no file, a path listed twice, an
    unknown split, fewer than two labels, or a label left without a usable image.
    """
    images, rows = Path(images), _rows(table)
    root = os.path.realpath(images)
    seen: dict[str, int] = {}
    listed: list[tuple[str, str, str]] = []  # (rel, label, split)
    for line, row in rows:
        where = f"--labels: {table} line {line}"
        rel, label, split = row.get("path", "").strip(), row.get("label", "").strip(), row.get("split", "").strip()
        if not rel or not label:
            raise RetrainError(f"{where} has an empty {'path' if not rel else 'label'}; {EXPECTED}")
        posix = PurePosixPath(rel.replace("\\", "/"))
        real = os.path.realpath(images / posix)
        if posix.is_absolute() or ".." in posix.parts or os.path.commonpath([root, real]) != root:
            raise RetrainError(f"{where}: {rel} is outside --images {images}; {EXPECTED}")
        rel = posix.as_posix()
        if rel in seen:
            raise RetrainError(f"{where}: {rel} is listed again (first on line {seen[rel]}); expected each path once")
        seen[rel] = line
        if not os.path.isfile(real):
            raise RetrainError(f"{where}: {rel} is not a file under --images {images}; expected an existing image")
        if split and split.lower() not in SPLIT_NAMES:
            raise RetrainError(f"{where}: split {split!r}; expected train, validation (or val), test or empty")
        listed.append((rel, label, SPLIT_NAMES.get(split.lower(), "")))
    labels = sorted({label for _, label, _ in listed})
    if len(labels) < 2:
        raise RetrainError(f"--labels: {table} names {len(labels)} label(s); expected at least 2")
    examples, skipped = [], []
    for rel, label, _ in listed:
        reason = formats.check(images / rel, max_pixels)
        if reason:
            skipped.append((rel, reason))
        else:
            examples.append(Example(Path(os.path.realpath(images / rel)), rel, labels.index(label)))
    for index, label in enumerate(labels):
        if not any(e.label == index for e in examples):
            mine = [s for s in skipped if any(r == s[0] and name == label for r, name, _ in listed)]
            raise RetrainError(f"--labels: label {label} in {table} has no usable images ({len(mine)} skipped: "
                               f"{counts(mine) or 'none'}); expected JPEG, PNG, GIF, BMP or still WebP files")
    examples.sort(key=lambda e: (e.label, e.rel))
    log.info("labels from %s: %d images in %d classes (%s)%s", table, len(examples), len(labels), ", ".join(labels),
             f"; skipped {len(skipped)}: {counts(skipped)}" if skipped else "")
    return Scan(labels, examples, sorted(skipped)), {rel: split for rel, _, split in listed if split}


def _rows(table: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: cell}) of each data row; the header must name path and label."""
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [cell.strip().lower() for cell in next(reader, [])]
            if "path" not in header or "label" not in header:
                raise RetrainError(f"--labels: {table} has header {','.join(header) or '(none)'}; {EXPECTED}")
            return [(reader.line_num, dict(zip(header, row))) for row in reader if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RetrainError(f"--labels: cannot read {table} ({getattr(error, 'strerror', None) or error}); "
                           f"{EXPECTED}") from None
