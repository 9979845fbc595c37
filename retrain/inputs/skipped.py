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


CATEGORIES = ("empty file", "too large", "truncated", "corrupt", "not an image", "unsupported format", "unreadable",
              "not in a class folder", "ambiguous", "symlink loop", "broken symlink", "not a regular file")
# The served graph's own refusals (retrain.images.headers), by their words, and the category the scan gives them.
_GRAPH = (("image_bytes: file of", "too large"), ("image_bytes: image of", "too large"),
          ("image_bytes: GIF frames", "too large"), ("image_bytes: not a JPEG", "not an image"),
          ("image_bytes: animated WebP", "unsupported format (animated WebP)"),
          ("image_bytes: BMP", "unsupported format (BMP variant)"))


def categorized(reason: str) -> str:
    """A reason found after the scan (the graph's refusal, a decoder's message) as "<category>: <detail>",
    with the categories the scan uses, so summaries count one category whichever stage found the problem."""
    if reason.startswith(CATEGORIES):
        return reason
    for words, category in _GRAPH:
        if reason.startswith(words):
            return f"{category}: {reason.removeprefix('image_bytes: ')}"
    lower = reason.lower()
    truncated = any(word in lower for word in ("truncat", "premature end", "cut short", "end of file"))
    return f"{'truncated' if truncated else 'corrupt'}: {reason}"


def printable(rel: str) -> str:
    """A path as valid UTF-8 text: bytes of a name that are not UTF-8 (surrogate escapes) become \\xNN."""
    return errors.printable(rel)


def write_skipped_csv(path: Path, skipped: list[tuple[str, str]]) -> None:
    """Write `path,reason` rows (header first) atomically, as retrain.fs.csv_bytes writes every CSV: each
    path reads back exactly (bytes that are not UTF-8 included)."""
    fs.write_atomic(Path(path), fs.csv_bytes([("path", "reason"), *skipped]))
