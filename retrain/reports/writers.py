"""Report files of a run folder, written from plain values; every write is atomic.

A file is written under a temporary name in its own folder and renamed over the final name, so a
killed run leaves either the whole file or none (never half a report). write_report_files() is the one
call a run or `evaluate` makes; the other writers are its parts.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import platform
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from retrain.fs import csv_bytes, write_atomic
from retrain.reports import metrics

log = logging.getLogger(__name__)
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def write_json(path: Path, obj) -> None:
    """Atomically write obj as indented JSON (numpy scalars and Paths become numbers and strings).

    UTF-8 as is; when a string holds bytes of a file name that are not UTF-8 (surrogate escapes), the
    whole file is written ASCII-escaped, so json.load gives back the exact name."""
    def fallback(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (Path, np.ndarray)):
            return str(value) if isinstance(value, Path) else value.tolist()
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=fallback) + "\n"
    try:
        write_atomic(path, text.encode("utf-8"))
    except UnicodeEncodeError:  # a file name that is not UTF-8: \udcNN escapes keep it exact and the JSON valid
        write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=True, default=fallback) + "\n")


def versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on, read from package metadata (no imports)."""
    from retrain.version import __version__  # this copy's version, not whichever is installed

    found = {"python": platform.python_version(), "retrain": __version__}
    for package in ("tensorflow", "tf-keras", "tensorflow-hub", "ai-edge-litert", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def run_card(**sections) -> dict:
    """The run.json object: creation time (UTC, ISO 8601), versions, then the caller's sections in order.

    The caller supplies module, image_size, classes, counts, options, metrics, class_weight,
    data_fingerprint, seconds per stage, ...; write it with write_json(run_dir / "run.json", card).
    """
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"created": created, "versions": versions(), **sections}


def data_fingerprint(split_csv_path: Path, file_digests: Iterable[str]) -> str:
    """sha256 hex over split.csv's bytes, then the sorted hex digests of the image files, one per line.

    Same images, same split, same fingerprint; any edited, added or re-split file changes it.
    """
    digest = hashlib.sha256(Path(split_csv_path).read_bytes())
    for item in sorted(file_digests):
        digest.update(f"\n{item}".encode("ascii"))
    return digest.hexdigest()


def write_confusion_csv(path: Path, matrix: np.ndarray, labels: list[str]) -> None:
    """Header: an empty cell, then the predicted labels; then per true label: the label, then counts."""
    rows = [[""] + list(labels)] + [[label] + [int(c) for c in row] for label, row in zip(labels, matrix)]
    write_atomic(path, csv_bytes(rows))


def write_misclassified_csv(path: Path, rows: Iterable[tuple[str, str, str, float]]) -> None:
    """rows: (path relative to --images, true label, predicted label, score of the prediction in [0, 1]).

    Written with header `path,true,predicted,score`, highest score first (the most confident mistakes).
    """
    ordered = sorted(rows, key=lambda r: -r[3])
    write_atomic(path, csv_bytes([["path", "true", "predicted", "score"]]
                                  + [[p, t, pr, f"{s:.6f}"] for p, t, pr, s in ordered]))


DATA_ISSUES_HEADER = ("path", "kind", "score", "suggested_label", "partner")


def write_data_issues_csv(path: Path, rows: Iterable[Sequence]) -> None:
    """rows: (path, kind, score, suggested label, partner path) in the order given (the audit ranks them)."""
    write_atomic(path, csv_bytes([list(DATA_ISSUES_HEADER)]
                                  + [[p, kind, f"{score:.6f}", suggested, partner]
                                     for p, kind, score, suggested, partner in rows]))


def write_history_csv(path: Path, history: list[dict]) -> None:
    """history: one dict per epoch with HISTORY_FIELDS (a missing value is left empty)."""
    rows = [[entry.get(field, "") for field in HISTORY_FIELDS] for entry in history]
    write_atomic(path, csv_bytes([list(HISTORY_FIELDS)] + rows))


@dataclasses.dataclass(frozen=True)
class Scored:
    """What a model said about one split: y_true int [N], scores float [N, K], paths relative to --images."""
    y_true: np.ndarray
    scores: np.ndarray
    paths: list[str]


def write_report_files(run_dir: Path, *, labels: list[str], splits: dict[str, Scored], judged: str,
                       images_root: Path, facts: dict, history: list[dict] | None = None,
                       kept_epoch: int | None = None, title: str = "retrain report", data=None) -> dict[str, dict]:
    """Write every report file into run_dir and return {split name: metrics summary} for metrics.json.

    The confusion matrix, misclassified list and thumbnails are of the `judged` split (named in the
    page; split.judged decides it). Without history (evaluate) there is no history.csv, training.png
    or curves section.
    """
    from retrain.reports import html, plots

    run_dir = Path(run_dir)
    results = {name: metrics.compute(s.y_true, s.scores, labels) for name, s in splits.items() if len(s.y_true)}
    chosen, scored = results[judged], splits[judged]
    write_confusion_csv(run_dir / "confusion_matrix.csv", chosen.confusion, labels)
    plots.confusion_png(run_dir / "confusion_matrix.png", chosen.confusion, labels)
    wrong = [(scored.paths[r], labels[t], labels[p], s) for r, t, p, s in chosen.misclassified]
    write_misclassified_csv(run_dir / "misclassified.csv", wrong)
    pictures = {f"Confusion matrix ({judged})": run_dir / "confusion_matrix.png"}
    if history:
        write_history_csv(run_dir / "history.csv", history)
        plots.training_png(run_dir / "training.png", history, kept_epoch)
        pictures["Training curves (per epoch)"] = run_dir / "training.png"
    summaries = {name: result.summary for name, result in results.items()}
    html.write_html(run_dir / "report.html", title=title, facts=facts, summaries=summaries, focus=judged,
                    labels=labels, pictures=pictures, worst=wrong, images_root=Path(images_root), data=data)
    if data is not None:
        write_data_issues_csv(run_dir / "data_issues.csv", [issue[:5] for issue in data.issues])
    log.debug("%s accuracy %.3f on %d images; report in %s", judged, chosen.summary["accuracy"],
              chosen.summary["count"], run_dir / "report.html")
    return summaries
