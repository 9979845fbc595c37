"""The data audit of a run or of `retrain check`: one call with plain values, one typed result.

examine() takes the examples of each split (with label and content digest), the files left out because
their bytes carry two labels, and the run's feature source, and returns an Audit: every issue found
(exact duplicates, near-copies across splits, likely label errors, outliers, small images), counts per
kind and the class balance. retrain.reports writes it as data_issues.csv, the Data section of
report.html and metrics.json.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from retrain.audit import labels as label_check
from retrain.audit import similarity

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
LABEL_SHARE = 0.2   # label_error rows: this share of all images (the issue asks at least a tenth), least likely first
CONFIDENT = 0.1     # a label error is counted as likely when the given label's out-of-fold probability is below this
SMALL = 0.5         # small_image: the longer side is below this share of the module's input side
KINDS = ("exact_duplicate", "near_duplicate", "label_error", "outlier", "small_image")


class Issue(NamedTuple):
    """One row of data_issues.csv, plus what the report needs to show it (plain values)."""
    path: str              # relative to --images (or --test-images for its files)
    kind: str              # one of KINDS
    score: float           # exact 1; near: cosine; label: LabelCheck.score; outlier: distance / class radius;
    #                        small: longer side / module input side (smaller is worse)
    suggested_label: str   # label_error: the likeliest label; exact_duplicate under two labels: the other one
    partner: str           # the duplicate's or near-copy's path; else empty
    label: str             # the given label
    file: Path             # the image file, for thumbnails
    partner_file: Path | None


@dataclasses.dataclass(frozen=True)
class Audit:
    issues: list[Issue]        # grouped by kind in KINDS order, most suspicious first within a kind
    counts: dict[str, int]     # per kind listed, plus conflicts, leaks, likely label errors, images judged
    balance: dict[str, int]    # label -> images used (all splits)
    line: str                  # the one summary line of the log

    def rows(self) -> list[tuple[str, str, float, str, str]]:
        """data_issues.csv rows: (path, kind, score, suggested_label, partner)."""
        return [i[:5] for i in self.issues]


def examine(parts: dict, left_out: list, labels: list[str], source, image_size: int,
            near_threshold: float) -> Audit:
    """Audit the examples of parts (split name -> retrain.inputs.scan.Example with rel, label, digest, path)
    and left_out (examples whose bytes are filed under two labels: no features, not trained on).

    source: the run's feature source over the examples of parts in SPLITS order (its .kept bool [N] and
    .chunks(rows, size)); its rows are read only when source.stable (a cache, not --no-cache).
    near_threshold: cosine at or above which a validation or test image counts as a near-copy of a
    training image. image_size: the module's input side, for small_image.
    """
    examples = [e for name in SPLITS for e in parts.get(name, [])]
    side = [name for name in SPLITS for _ in parts.get(name, [])]
    issues = _exact(examples, side, left_out, labels)
    counts = {"conflicts": len(left_out), "leaks": _leaks(examples, side)}
    if source is not None and getattr(source, "stable", False):
        features, kept = _rows(source, len(examples))
        issues += _near(examples, side, features, kept, near_threshold)
        listed, likely = _label_errors(examples, features, kept, labels)
        issues += listed
        counts["likely_label_errors"] = likely
        issues += _outliers(examples, features, kept, labels)
    else:
        log.info("data check: feature-based checks need the feature cache (not --no-cache); skipped")
    issues += _small(examples, labels, image_size)
    counts = {**{kind: sum(1 for i in issues if i.kind == kind) for kind in KINDS}, **counts,
              "images": len(examples) + len(left_out)}
    balance = dict(collections.Counter(labels[e.label] for e in examples))
    balance = {label: balance.get(label, 0) for label in labels}
    line = summary_line(counts, balance)
    log.info("%s", line)
    return Audit(issues, counts, balance, line)


def summary_line(counts: dict[str, int], balance: dict[str, int]) -> str:
    """'data: 2 exact duplicates (1 under two labels, 1 across splits), 0 near-copies, ...' for the log."""
    sizes = sorted(balance.values())
    ratio = f"{sizes[-1] / sizes[0]:.1f}x" if sizes and sizes[0] else "a class is empty"
    likely = counts.get("likely_label_errors")
    return (f"data: {counts['exact_duplicate']} exact duplicates ({counts['conflicts']} under two labels, "
            f"{counts['leaks']} across splits), {counts['near_duplicate']} near-copies across splits, "
            + (f"{likely} likely label errors ({counts['label_error']} least likely listed), "
               if likely is not None else "")
            + f"{counts['outlier']} outliers, {counts['small_image']} small images; "
            f"classes {sizes[0] if sizes else 0}-{sizes[-1] if sizes else 0} images ({ratio}); see data_issues.csv")


def _leaks(examples: list, side: list[str]) -> int:
    """Validation and test files whose bytes are also in training (only --test-images can cause them: the
    split keeps copies together)."""
    train = {e.digest for e, name in zip(examples, side) if name == "train"}
    return sum(1 for e, name in zip(examples, side) if name != "train" and e.digest in train)


def _rows(source, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [n, D] feature rows, bool [n] kept) from the feature source."""
    kept = np.asarray(source.kept, bool).copy()
    features = np.zeros((n, source.dim), np.float32)
    for rows, chunk in source.chunks(np.flatnonzero(kept), 4096):
        features[rows] = chunk
    return features, kept


def _exact(examples: list, side: list[str], left_out: list, labels: list[str]) -> list[Issue]:
    """Every file whose bytes another file also holds; partner: the group's first other file.
    Order: under two labels, then across splits, then same split."""
    everyone = [(e, name) for e, name in zip(examples, side)] + [(e, "") for e in left_out]
    groups = collections.defaultdict(list)
    for e, name in everyone:
        groups[e.digest].append((e, name))
    found = []
    for members in groups.values():
        if len(members) < 2:
            continue
        kinds = {e.label for e, _ in members}
        splits = {name for _, name in members}
        for e, _ in members:
            other = next(o for o, _ in members if o is not e)
            if len(kinds) > 1:
                partner = next(o for o, _ in members if o.label != e.label)
                found.append((0, Issue(e.rel, "exact_duplicate", 1.0, labels[partner.label], partner.rel,
                                       labels[e.label], e.path, partner.path)))
            else:
                found.append((1 if len(splits) > 1 else 2, Issue(e.rel, "exact_duplicate", 1.0, "", other.rel,
                                                                  labels[e.label], e.path, other.path)))
    return [issue for _, issue in sorted(found, key=lambda t: (t[0], t[1].path))]


def _near(examples: list, side: list[str], features: np.ndarray, kept: np.ndarray, threshold: float) -> list[Issue]:
    """Each validation or test image whose most similar image in another split (other bytes) is at or above
    threshold: a copy in validation leaks into test as much as one in training does."""
    split_of = np.array(side)
    held = np.flatnonzero(kept & (split_of != "train"))
    everyone = np.flatnonzero(kept)
    digests = np.array([e.digest for e in examples])

    def same(q: np.ndarray) -> np.ndarray:  # same split or same bytes: not a near-copy across splits
        rows = held[q]
        return ((split_of[rows][:, None] == split_of[everyone][None, :])
                | (digests[rows][:, None] == digests[everyone][None, :]))

    best, cosine = similarity.nearest(features[held], features[everyone], same)
    found = []
    for i, j, c in zip(held, best, cosine):
        if j >= 0 and c >= threshold:
            e, partner = examples[i], examples[everyone[j]]
            found.append(Issue(e.rel, "near_duplicate", round(float(c), 6), "", partner.rel, "", e.path, partner.path))
    return sorted(found, key=lambda i: (-i.score, i.path))


def _label_errors(examples: list, features: np.ndarray, kept: np.ndarray, labels: list[str]) -> tuple[list, int]:
    """(the least likely LABEL_SHARE of images as label_error issues, how many are likely wrong)."""
    rows = np.flatnonzero(kept)
    y = np.array([examples[i].label for i in rows], np.int64)
    if len(rows) < 2 * label_check.FOLDS or len(np.unique(y)) < 2:
        return [], 0
    check = label_check.check_labels(features[rows], y, len(labels), [examples[i].digest for i in rows])
    order = np.argsort(-check.score, kind="stable")
    listed = order[:math.ceil(LABEL_SHARE * len(rows))]
    likely = int(np.sum((check.given < CONFIDENT) & (check.suggested != y)))
    issues = [Issue(examples[rows[k]].rel, "label_error", round(float(check.score[k]), 6),
                    labels[int(check.suggested[k])], "", labels[y[k]], examples[rows[k]].path, None) for k in listed]
    return issues, likely


def _outliers(examples: list, features: np.ndarray, kept: np.ndarray, labels: list[str]) -> list[Issue]:
    rows = np.flatnonzero(kept)
    y = np.array([examples[i].label for i in rows], np.int64)
    ratio = similarity.outliers(features[rows], y, len(labels))
    found = [Issue(examples[rows[k]].rel, "outlier", round(float(ratio[k]), 6), "", "", labels[y[k]],
                   examples[rows[k]].path, None) for k in np.flatnonzero(ratio > 1.0)]
    return sorted(found, key=lambda i: (-i.score, i.path))


def _small(examples: list, labels: list[str], image_size: int) -> list[Issue]:
    """Images whose longer side is below SMALL of the input side: the module sees them blown up."""
    found = []
    for e in examples:
        try:
            with Image.open(e.path) as image:
                longest = max(image.size)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if longest < SMALL * image_size:
            found.append(Issue(e.rel, "small_image", round(longest / image_size, 6), "", "", labels[e.label],
                               e.path, None))
    return sorted(found, key=lambda i: (i.score, i.path))
