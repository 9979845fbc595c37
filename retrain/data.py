"""Image folder -> labels, files and a stable train/validation split; the only module reading input files.

Nothing here imports TensorFlow, so bad input is reported before the slow import starts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

from retrain.errors import RetrainError

log = logging.getLogger(__name__)

# Magic numbers: formats are recognised by content, so "photo.jpg" that is really a PNG still counts.
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"),
          (b"GIF89a", "gif"), (b"BM", "bmp"))


@dataclasses.dataclass(frozen=True)
class Example:
    path: Path   # absolute path of the image file
    rel: str     # path relative to the images folder, POSIX form: the split hashes this
    label: int   # index into the sorted label list


def sniff(path: Path) -> str | None:
    """The image format of a file by its first bytes (jpeg, png, gif, bmp, webp), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def _class_files(folder: Path) -> list[Path]:
    """Image files anywhere under one class folder, sorted; hidden files and folders are skipped."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return found


def scan(images: Path) -> tuple[list[str], list[Example]]:
    """One sub-folder per class -> (sorted labels, examples in label then path order).

    Raises RetrainError for a missing or empty folder, fewer than two classes or a class without images.
    """
    images = Path(images)
    if not images.is_dir():
        raise RetrainError(f"--images: {images} is not a folder; expected a folder with one sub-folder per class")
    labels = sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise RetrainError(f"--images: {images} has no class sub-folders; expected e.g. {images}/<label>/*.jpg")
    if len(labels) < 2:
        raise RetrainError(f"--images: {images} has 1 class ({labels[0]}); expected at least 2 class folders")
    examples, skipped = [], 0
    for index, label in enumerate(labels):
        files = _class_files(images / label)
        kept = [f for f in files if sniff(f)]
        skipped += len(files) - len(kept)
        if not kept:
            raise RetrainError(f"--images: class folder {images / label} has no images "
                               f"({len(files)} other files); expected JPEG, PNG, GIF, BMP or WebP files")
        examples += [Example(f.resolve(), f.relative_to(images).as_posix(), index) for f in kept]
    if skipped:
        log.warning("skipped %d files that are not JPEG, PNG, GIF, BMP or WebP images", skipped)
    log.info("found %d images in %d classes: %s", len(examples), len(labels), ", ".join(labels))
    return labels, examples


def _hash_fraction(rel: str) -> float:
    """A stable number in [0, 1) from the relative path: the same file always lands in the same split."""
    return int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:8], "big") / 2**64


def split(examples: list[Example], validation_split: float) -> tuple[list[Example], list[Example]]:
    """Per class, a path's hash below validation_split sends it to validation.

    Adding images or moving the folder never moves an existing image across the split. A class with
    two or more images keeps at least one on each side, so every class is both learnt and checked.
    """
    train, val = [], []
    for label in sorted({e.label for e in examples}):
        ranked = sorted((e for e in examples if e.label == label), key=lambda e: _hash_fraction(e.rel))
        n_val = sum(_hash_fraction(e.rel) < validation_split for e in ranked)
        # Every class keeps a training image; with two or more it also gets a validation image.
        n_val = min(max(n_val, 1), len(ranked) - 1)
        val += ranked[:n_val]
        train += ranked[n_val:]
    return train, val
