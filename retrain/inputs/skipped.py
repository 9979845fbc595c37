"""The list of skipped files: counts by category for the log line, and skipped.csv.

A skip is (path relative to the images folder, reason); a reason reads "<category>: <detail>",
e.g. "unsupported format (TIFF): the served model cannot decode it; convert to PNG or JPEG".
"""
from __future__ import annotations

import collections
from pathlib import Path

from retrain import errors, fs


def counts(skipped: list[tuple[str, str]]) -> str:
    """'3 truncated, 2 unsupported format (TIFF)': skips per category (the text before ':'), commonest first."""
    tally = collections.Counter(reason.split(":")[0] for _, reason in skipped)
    return ", ".join(f"{n} {category}" for category, n in tally.most_common())


def printable(rel: str) -> str:
    """A path as valid UTF-8 text: bytes of a name that are not UTF-8 (surrogate escapes) become \\xNN."""
    return errors.printable(rel)


def write_skipped_csv(path: Path, skipped: list[tuple[str, str]]) -> None:
    """Write `path,reason` rows (header first) atomically, as retrain.fs.csv_bytes writes every CSV: each
    path reads back exactly (bytes that are not UTF-8 included)."""
    fs.write_atomic(Path(path), fs.csv_bytes([("path", "reason"), *skipped]))
