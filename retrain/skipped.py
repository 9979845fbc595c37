"""The list of skipped files: counts by category for the log line, and skipped.csv.

A skip is (path relative to the images folder, reason); a reason reads "<category>: <detail>",
e.g. "unsupported format (TIFF): the served model cannot decode it; convert to PNG or JPEG".
"""
from __future__ import annotations

import collections
import csv
import os
import tempfile
from pathlib import Path

from retrain import errors


def counts(skipped: list[tuple[str, str]]) -> str:
    """'3 truncated, 2 unsupported format (TIFF)': skips per category (the text before ':'), commonest first."""
    tally = collections.Counter(reason.split(":")[0] for _, reason in skipped)
    return ", ".join(f"{n} {category}" for category, n in tally.most_common())


def printable(rel: str) -> str:
    """A path as valid UTF-8 text: bytes of a name that are not UTF-8 (surrogate escapes) become \\xNN."""
    return errors.printable(rel)


def write_skipped_csv(path: Path, skipped: list[tuple[str, str]]) -> None:
    """Write `path,reason` rows (header first) atomically: a temporary file in the same folder, then os.replace.

    Paths that are not valid UTF-8 are written with \\xNN escapes, so the file stays UTF-8.
    """
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", dir=path.parent,
                                     prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        try:
            writer = csv.writer(f)
            writer.writerow(["path", "reason"])
            writer.writerows((printable(rel), reason) for rel, reason in skipped)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            os.unlink(f.name)
            raise
    os.replace(f.name, path)
