"""The input side of a run: scan --images (and --test-images), report or refuse skipped files, split.

Nothing here imports TensorFlow: everything a user can fix in the folders is reported within a second
or two, before the slow import.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from pathlib import Path

from retrain import fs
from retrain.errors import RetrainError, printable, skip_line
from retrain.inputs import listing, scan, skipped, split

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Inputs:
    labels: list[str]                          # the model's output order
    parts: dict[str, list[scan.Example]]       # split name -> examples (train, validation, test)
    test_root: Path                            # the folder test paths are relative to
    skipped: list[tuple[str, str]]             # (path relative to --images, reason) found by the scan
    conflicts: list[scan.Example] = dataclasses.field(default_factory=list)  # same bytes under two labels: left out


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
         strict: bool, labels: Path | None = None) -> Inputs:
    """Scan (class folders, a --labels file, or train/ val/ test/ folders), hash every file, leave out files
    whose bytes are filed under two labels (refused with --strict), apply --strict, split (keeping copies
    together; splits named by the file or the folders are kept), or take --test-images as the test set
    (test_split unused)."""
    found, given = _scan(images, labels, max_pixels)
    if strict and found.skipped:
        rel, why = found.skipped[0]
        raise RetrainError(f"--strict: {len(found.skipped)} files would be skipped ({skipped.counts(found.skipped)});"
                           f" first: {skipped.printable(rel)}: {why}")
    examples, conflicts = _conflicts(with_digests(found.examples), found.labels, strict)
    test_split = 0.0 if test_images is not None else test_split
    parts = _split(examples, given, found.labels, validation_split, test_split)
    if not parts["validation"]:
        raise RetrainError(f"--images: {images} has one image (or files with the same bytes) per class; expected "
                           "at least 2 different images per class so that some can be held out for validation")
    if test_images is None:
        return Inputs(found.labels, parts, Path(images), found.skipped, conflicts)
    tests = scan.scan(test_images, max_pixels)
    unknown = sorted(set(tests.labels) - set(found.labels))
    if unknown:
        raise RetrainError(f"--test-images: folders {', '.join(unknown)} are not classes of --images; "
                           f"expected some of {', '.join(found.labels)}")
    parts["test"] = with_digests([dataclasses.replace(e, label=found.labels.index(tests.labels[e.label]))
                                  for e in tests.examples])
    outside = [(str(Path(test_images) / rel), why) for rel, why in tests.skipped]
    return Inputs(found.labels, parts, Path(test_images), found.skipped + outside, conflicts)


def _scan(images: Path, labels: Path | None, max_pixels: int) -> tuple[scan.Scan, dict[str, str]]:
    """(Scan, {rel: given split}) from --labels, the train/ val/ test/ layout, or class folders."""
    if labels is not None:
        return listing.read(images, labels, max_pixels)
    folders = listing.layout(images)
    if folders is None:
        return scan.scan(images, max_pixels), {}
    log.info("--images: %s holds %s folders; using them as the given split", images,
             " ".join(f"{p.name}/" for p in folders.values()))
    scans = {name: scan.scan(folder, max_pixels) for name, folder in folders.items()}
    labels_ = scans["train"].labels
    examples, skips, given = [], [], {}
    for name, found in scans.items():
        unknown = sorted(set(found.labels) - set(labels_))
        if unknown:
            raise RetrainError(f"--images: {folders[name]} has classes {', '.join(unknown)} that train/ lacks; "
                               f"expected some of {', '.join(labels_)}")
        prefix = folders[name].name
        for e in found.examples:
            rel = f"{prefix}/{e.rel}"
            examples.append(dataclasses.replace(e, rel=rel, label=labels_.index(found.labels[e.label])))
            given[rel] = name
        skips += [(f"{prefix}/{rel}", why) for rel, why in found.skipped]
    return scan.Scan(labels_, examples, sorted(skips)), given


def _split(examples: list[scan.Example], given: dict[str, str], labels: list[str], validation_split: float,
           test_split: float) -> dict:
    """Split name -> examples. Rows with a given validation or test split keep it; a split nobody named is
    carved by hash from the rest (given train rows included), with --validation-split and --test-split."""
    named = set(given.values())
    validation = 0.0 if "validation" in named else validation_split
    test = 0.0 if "test" in named else test_split
    pool = [e for e in examples if given.get(e.rel, "train") == "train"]
    parts = split.split_examples(pool, labels, validation, test).as_dict()
    if named:
        order = {id(e): i for i, e in enumerate(examples)}
        for name in ("validation", "test"):
            parts[name] = sorted(parts[name] + [e for e in examples if given.get(e.rel) == name],
                                 key=lambda e: order[id(e)])
    return parts


def with_digests(examples: list[scan.Example]) -> list[scan.Example]:
    """The examples with `digest` set to the SHA-256 hex of their bytes (the feature cache's key too)."""
    return [e if e.digest else dataclasses.replace(e, digest=fs.file_digest(e.path)) for e in examples]


def _conflicts(examples: list[scan.Example], labels: list[str], strict: bool):
    """(examples to use, examples left out): files whose bytes are filed under two labels train nothing."""
    classes = collections.defaultdict(set)
    for e in examples:
        classes[e.digest].add(e.label)
    left_out = [e for e in examples if len(classes[e.digest]) > 1]
    if not left_out:
        return examples, []
    first = left_out[0]
    other = next(e for e in left_out if e.digest == first.digest and e.label != first.label)
    line = (f"{len(left_out)} files have the same bytes as a file of another label; first: {first.rel} "
            f"({labels[first.label]}) and {other.rel} ({labels[other.label]})")
    if strict:
        raise RetrainError(f"--strict: {line}; expected each image under one label")
    log.warning("%s: left out of training, listed in data_issues.csv", line)
    return [e for e in examples if len(classes[e.digest]) == 1], left_out


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
