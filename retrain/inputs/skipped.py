"""The list of skipped files: counts by category for the log line, and skipped.csv.

A skip is (path relative to the images folder, reason); a reason reads "<category>: <detail>",
e.g. "unsupported format (TIFF): the served model cannot decode it; convert to PNG or JPEG".
"""
from __future__ import annotations

import collections
import csv
import io
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
    """Write `path,reason` rows (header first) atomically (retrain.fs). Paths that are not valid UTF-8 are
    written with \\xNN escapes, so the file stays UTF-8."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows((printable(rel), reason) for rel, reason in skipped)
    fs.write_atomic(Path(path), text.getvalue())
