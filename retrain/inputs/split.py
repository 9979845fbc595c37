"""Stable train / validation / test split, per class, by a hash of each file's path relative to --images.

An image's split depends only on its own relative path, so adding images or moving the images folder
never moves an existing image to another split (except in classes so small that the minimums below
apply). A file name part `_nohash_` groups near-duplicates, as TF1's retrain.py did: only the folder
and the part of the name before `_nohash_` are hashed, so `cat1_nohash_a.jpg` and `cat1_nohash_b.jpg`
always land in the same split.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

from retrain.fs import csv_bytes, write_atomic
from retrain.inputs.scan import Example

log = logging.getLogger(__name__)

NOHASH = "_nohash_"
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Split:
    train: list[Example]
    validation: list[Example]
    test: list[Example]   # empty when test_split is 0

    def as_dict(self) -> dict[str, list[Example]]:
        return {name: getattr(self, name) for name in SPLITS}


def judged(sizes: dict[str, int]) -> str:
    """The split the reports and the --min-accuracy gate judge: test when it holds images, else validation.
    sizes: split name -> images with features."""
    return "test" if sizes.get("test") else "validation"


def group_key(rel: str) -> str:
    """The string hashed for one file: its relative POSIX path, cut before `_nohash_` in the file name."""
    folder, _, name = rel.rpartition("/")
    if NOHASH in name:
        name = name.split(NOHASH, 1)[0]
    return f"{folder}/{name}" if folder else name


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1): the first 8 bytes of sha256(key as UTF-8), as a fraction."""
    # surrogateescape keeps file names that are not valid UTF-8 hashable (see FACTS: surrogate escapes).
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") / 2**64


def _block_sizes(fractions: list[float], validation: float, test: float) -> list[int]:
    """[n_test, n_validation, n_train] groups for one class, from sorted hash fractions.

    Natural sizes come from the thresholds (test below `test`, validation below `test + validation`);
    then minimums are met in priority order: a training group, a validation group with >= 2 groups,
    a test group with >= 3 groups (when test > 0). Each missing group is taken from the split that
    has the most to spare, so the fewest images move.
    """
    n_test = sum(f < test for f in fractions)
    n_val = sum(test <= f < test + validation for f in fractions)
    sizes = [n_test, n_val, len(fractions) - n_test - n_val]
    groups = len(fractions)
    need = [1 if groups >= 3 and test > 0 else 0, 1 if groups >= 2 else 0, 1]
    for wanted in (2, 1, 0):
        while sizes[wanted] < need[wanted]:
            donor = max((i for i in range(3) if i != wanted), key=lambda i: sizes[i] - need[i])
            sizes[donor] -= 1
            sizes[wanted] += 1
    return sizes


def split_examples(examples: list[Example], labels: list[str], validation_split: float = 0.1,
                   test_split: float = 0.1) -> Split:
    """Per class: hash fraction below test_split -> test, below test_split + validation_split -> validation.

    examples: retrain.inputs.scan.Example objects (their `rel` is hashed); labels: names by label index, used
    in warnings. Fractions in [0, 1) with validation_split + test_split < 1 (checked by Config). Every
    class keeps a training image and, with two or more groups, a validation image; a class too small
    for a test image gets a warning naming it. Within each split, examples keep label-then-path order.
    """
    chosen: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for label in sorted({e.label for e in examples}):
        groups: dict[str, list[Example]] = {}
        for e in examples:
            if e.label == label:
                groups.setdefault(group_key(e.rel), []).append(e)
        ranked = sorted(groups, key=lambda k: (hash_fraction(k), k))
        n_test, n_val, _ = _block_sizes([hash_fraction(k) for k in ranked], validation_split, test_split)
        for position, key in enumerate(ranked):
            name = "test" if position < n_test else "validation" if position < n_test + n_val else "train"
            chosen[name] += groups[key]
        if n_val == 0:
            log.warning("class %s has %d image group(s): none held out for validation", labels[label], len(ranked))
        if test_split > 0 and n_test == 0:
            log.warning("class %s has %d image group(s), too few for a test image; its test metrics are missing",
                        labels[label], len(ranked))
    order = {id(e): i for i, e in enumerate(examples)}
    result = Split(**{name: sorted(found, key=lambda e: order[id(e)]) for name, found in chosen.items()})
    log.info("split: %d training, %d validation, %d test images",
             len(result.train), len(result.validation), len(result.test))
    return result


def split_csv_bytes(examples_by_split: dict[str, list[Example]], labels: list[str]) -> bytes:
    """The bytes of split.csv: header `path,class,split`, one row per image, path relative to --images
    (retrain.fs.csv_bytes: every path reads back exactly)."""
    return csv_bytes([("path", "class", "split")] + [(e.rel, labels[e.label], name) for name in SPLITS
                                                      for e in examples_by_split.get(name, [])])


def write_split_csv(path: Path, examples_by_split: dict[str, list[Example]], labels: list[str]) -> Path:
    """Write split.csv atomically (temp name in the same folder, then os.replace); returns path."""
    write_atomic(Path(path), split_csv_bytes(examples_by_split, labels))
    return Path(path)
