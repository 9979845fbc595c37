"""The input side of a run: scan --images (and --test-images), report or refuse skipped files, split.

Nothing here imports TensorFlow: everything a user can fix in the folders is reported within a second
or two, before the slow import.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from retrain.errors import RetrainError, printable, skip_line
from retrain.inputs import scan, skipped, split

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Inputs:
    labels: list[str]                          # the model's output order
    parts: dict[str, list[scan.Example]]       # split name -> examples (train, validation, test)
    test_root: Path                            # the folder test paths are relative to
    skipped: list[tuple[str, str]]             # (path relative to --images, reason) found by the scan


def check_places(readers: dict[str, Path | None], writers: dict[str, Path | str | None]) -> None:
    """Refuse a folder the run writes (option -> folder: --output, --tensorboard, --cache-dir, ...) inside a
    folder it reads images from (option -> folder): the next run would take it for a class and train on
    the reports' pictures. None and URLs (gs://...) are left out."""
    for reader, images in readers.items():
        if images is None:
            continue
        root = Path(os.path.realpath(images))
        for option, folder in writers.items():
            if folder is None or "://" in str(folder):
                continue
            where = Path(os.path.realpath(folder))
            if root == where or root in where.parents:
                raise RetrainError(f"{option}: {printable(folder)} is inside {reader} {printable(images)}; expected "
                                   f"a folder outside it (the next run would read it as a class of images)")


def read(images: Path, *, test_images: Path | None, validation_split: float, test_split: float, max_pixels: int,
         strict: bool) -> Inputs:
    """Scan --images, apply --strict, split (or take --test-images as the test set, test_split unused)."""
    found = scan.scan(images, max_pixels)
    if strict and found.skipped:
        rel, why = found.skipped[0]
        raise RetrainError(f"--strict: {len(found.skipped)} files would be skipped ({skipped.counts(found.skipped)});"
                           f" first: {skipped.printable(rel)}: {why}")
    test_split = 0.0 if test_images is not None else test_split
    parts = split.split_examples(found.examples, found.labels, validation_split, test_split).as_dict()
    if not parts["validation"]:
        raise RetrainError(f"--images: {images} has one image per class; expected at least 2 per class "
                           "so that some can be held out for validation")
    if test_images is None:
        return Inputs(found.labels, parts, Path(images), found.skipped)
    tests = scan.scan(test_images, max_pixels)
    unknown = sorted(set(tests.labels) - set(found.labels))
    if unknown:
        raise RetrainError(f"--test-images: folders {', '.join(unknown)} are not classes of --images; "
                           f"expected some of {', '.join(found.labels)}")
    parts["test"] = [dataclasses.replace(e, label=found.labels.index(tests.labels[e.label])) for e in tests.examples]
    outside = [(str(Path(test_images) / rel), why) for rel, why in tests.skipped]
    return Inputs(found.labels, parts, Path(test_images), found.skipped + outside)


def relative(examples: list[scan.Example], stage_skips: list[tuple[Path, str]],
             images: Path | None = None) -> list[tuple[str, str]]:
    """Skips found after the scan (files TensorFlow would not decode) as (path relative to --images, reason),
    with the scan's categories; with images given, each is logged as the scan logs its skips (images / rel)."""
    rel = {e.path: e.rel for e in examples}
    found = [(rel.get(Path(path), str(path)), skipped.categorized(why)) for path, why in stage_skips]
    for path, why in found if images is not None else ():
        log.warning(skip_line(Path(images) / path, why))
    return found


def check_classes_kept(labels: list[str], y_train, images: Path) -> None:
    """Every class must keep a training image after skipped files are left out (y_train: int labels)."""
    present = {int(label) for label in y_train}
    empty = [label for i, label in enumerate(labels) if i not in present]
    if empty:
        raise RetrainError(f"--images: class {empty[0]} in {images} has no usable training image after "
                           "skipping files that do not decode; expected at least one")
