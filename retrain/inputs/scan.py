"""Image folder -> labels, usable files, and skipped files with reasons (retrain.inputs.split splits them).

The only module listing input files. Nothing here imports TensorFlow, so bad input is reported
before the slow import starts. Each file is judged by retrain.inputs.formats (what the shared decoding
graph will accept); folders are walked by retrain.inputs.walk (symlinks followed, loops reported).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from pathlib import Path

from retrain import stop
from retrain.errors import CONTROL, RetrainError, printable, skip_line
from retrain.inputs import formats
from retrain.inputs.progress import Progress
from retrain.inputs.skipped import counts, write_skipped_csv
from retrain.inputs.walk import Walk, is_debris, is_folder, real_path, walk

log = logging.getLogger(__name__)
__all__ = ["Example", "Scan", "scan", "write_skipped_csv"]
MANY_NON_IMAGES = 1000  # with ten times more non-images than images, the folder is probably not a data set


@dataclasses.dataclass(frozen=True)
class Example:
    path: Path   # absolute, resolved path of the image file (symlinks followed)
    rel: str     # path relative to the images folder, POSIX form: the split hashes this
    label: int   # index into the sorted label list


@dataclasses.dataclass(frozen=True)
class Scan:
    labels: list[str]                 # sorted class folder names: the model's output order
    examples: list[Example]           # usable images, in label then path order, each real file once
    skipped: list[tuple[str, str]]    # (path relative to the images folder, one-line reason), sorted by path
    ignored: int = 0                  # hidden files and OS debris (.DS_Store, Thumbs.db, ._*): counted, not listed


def _labels(images: Path) -> list[str]:
    if not images.is_dir():
        raise RetrainError(f"--images: {images} is not a folder; expected a folder with one sub-folder per class")
    labels = sorted(p.name for p in images.iterdir() if p.is_dir() and not is_debris(p.name, folder=True))
    if not labels:
        raise RetrainError(f"--images: {images} has no class sub-folders; expected e.g. {images}/<label>/*.jpg")
    if len(labels) < 2:
        raise RetrainError(f"--images: {images} has 1 class ({labels[0]}); expected at least 2 class folders")
    for label in labels:
        _check_label(images, label)
    return labels


def _check_label(images: Path, label: str) -> None:
    """A class name becomes a line of labels.txt and a string in the model: it must be one line of UTF-8."""
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise RetrainError(f"--images: class folder {printable(images / label)} has a name that is not UTF-8; "
                           "expected a name that labels.txt and the model can hold (rename the folder)") from None
    if CONTROL.search(label):
        raise RetrainError(f"--images: class folder {printable(images / label)} has a control character (newline, "
                           "tab, ...) in its name; expected a name of one line (rename the folder)")


def _stray_files(images: Path, found: Walk) -> None:
    """Files directly under the images folder belong to no class: say so rather than drop them silently."""
    for entry in sorted(os.scandir(images), key=lambda e: e.name):
        if is_debris(entry.name, folder=is_folder(entry)):
            found.ignored.append(entry.name)
        elif not is_folder(entry):
            found.skipped.append((entry.name, "not in a class folder: only files inside class sub-folders are used"))


def _by_file(found: dict[str, Walk], labels: list[str]) -> tuple[dict[str, list[tuple[str, int]]], list]:
    """Real path -> its (rel, label) paths, and skips for files whose paths disagree on the class."""
    paths: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for index, label in enumerate(labels):
        for real, rel in found[label].files:
            paths[real].append((rel, index))
    ambiguous = []
    for real, where in list(paths.items()):
        classes = sorted({labels[i] for _, i in where})
        if len(classes) > 1:
            ambiguous += [(rel, f"ambiguous: the same file is in classes {' and '.join(classes)}") for rel, _ in where]
            del paths[real]
    return paths, ambiguous


def _walk_classes(images: Path, labels: list[str], progress: Progress) -> tuple[Walk, dict[str, Walk]]:
    """(files directly under images, {label: everything under its folder})."""
    top = Walk()
    _stray_files(images, top)
    found = {label: Walk(progress=progress) for label in labels}
    for label in labels:
        real, problem = real_path(images / label)
        if problem:
            found[label].skipped.append((label, problem))
        else:
            walk(images / label, label, frozenset({os.path.realpath(images), real}), found[label])
    return top, found


def scan(images: Path, max_pixels: int) -> Scan:
    """One sub-folder per class -> Scan: labels, usable examples and every skipped file with its reason.

    A file reached through several paths (links) is used once, under its first path in sorted order.
    Raises RetrainError for a missing or empty folder, fewer than two classes or a class left without
    usable images (naming the class and its commonest skip reasons).
    """
    images = Path(images)
    _check_root(images)
    with stop.immediate():  # plain Python: the first Ctrl-C or SIGTERM stops the scan at once
        return _scan(images, max_pixels)


def _check_root(images: Path) -> None:
    """Refuse a root that is obviously not a folder of class folders: walking it would take minutes."""
    where, home = Path(os.path.realpath(images)), Path(os.path.realpath(Path.home()))
    if where == Path(where.anchor):
        what = "the root of the file system"
    elif where == home:
        what = "your home folder"
    elif where in home.parents:
        what = "a folder above your home folder"
    else:
        return
    raise RetrainError(f"--images: {printable(images)} is {what}; expected a folder with one sub-folder "
                       "of images per class")


def _scan(images: Path, max_pixels: int) -> Scan:
    progress = Progress(images)
    labels = _labels(images)
    top, found = _walk_classes(images, labels, progress)
    paths, skipped = _by_file(found, labels)
    skipped += top.skipped + [s for w in found.values() for s in w.skipped]
    examples = []
    progress.total = len(paths)
    for real, where in paths.items():
        progress.tick(checked=1)
        reason = formats.check(Path(real), max_pixels)
        if reason:
            skipped += [(rel, reason) for rel, _ in where]
        else:
            rel, label = min(where)
            examples.append(Example(Path(real), rel, label))
    examples.sort(key=lambda e: (e.label, e.rel))
    result = Scan(labels, examples, sorted(skipped), len(top.ignored) + sum(len(w.ignored) for w in found.values()))
    _check_classes(images, result)
    _log_summary(images, result, sum(len(w) for w in paths.values()) - len(paths))
    return result


def _check_classes(images: Path, result: Scan) -> None:
    used = collections.Counter(e.label for e in result.examples)
    for index, label in enumerate(result.labels):
        if not used[index]:
            mine = [s for s in result.skipped if s[0] == label or s[0].startswith(label + "/")]
            found = f"no usable images ({len(mine)} skipped: {counts(mine)})" if mine else "no images (no files)"
            raise RetrainError(f"--images: class folder {images / label} has {found}; "
                               "expected JPEG, PNG, GIF, BMP or still WebP files")


def _log_summary(images: Path, result: Scan, duplicates: int) -> None:
    for rel, reason in result.skipped:  # the same line a file gets when a later stage skips it
        log.info(skip_line(images / rel, reason))
    line = f"found {len(result.examples)} images in {len(result.labels)} classes ({', '.join(result.labels)})"
    if result.skipped:
        line += f"; skipped {len(result.skipped)}: {counts(result.skipped)}"
    if result.ignored:
        line += f"; ignored {result.ignored} hidden files and OS debris"
    if duplicates:
        line += f"; {duplicates} extra paths (links) to files already found, each file used once"
    (log.warning if result.skipped else log.info)("%s", line)
    strange = sum(reason.startswith("not an image") for _, reason in result.skipped)
    if strange >= MANY_NON_IMAGES and strange > 10 * len(result.examples):
        log.warning("--images: %d files are not images, against %d images; is %s the folder of class folders?",
                    strange, len(result.examples), printable(images))
