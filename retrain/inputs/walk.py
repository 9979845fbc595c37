"""Folder -> every file under it, following symlinks safely; hidden files and OS debris left out.

Datasets are often assembled from links, so links to files and to folders anywhere (also outside the
images folder) are followed. A link back to a folder already being walked (a loop) is not followed
and is reported; so are broken links and entries that are not regular files. No TensorFlow here.
"""
from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

# Files that operating systems and sync tools leave in folders; never images, never worth a line in skipped.csv.
DEBRIS_FILES = frozenset({"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r", ".ds_store"})
DEBRIS_FOLDERS = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information", ".trashes"})


def is_debris(name: str, folder: bool = False) -> bool:
    """Hidden (leading dot, which includes macOS '._*' resource forks) or an OS/sync-tool leftover."""
    return name.startswith(".") or name.lower() in (DEBRIS_FOLDERS if folder else DEBRIS_FILES)


@dataclasses.dataclass
class Walk:
    files: list[tuple[str, str]] = dataclasses.field(default_factory=list)    # (real path, rel path)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (rel path, reason)
    ignored: list[str] = dataclasses.field(default_factory=list)              # rel paths of debris
    progress: object = None  # a retrain.inputs.progress.Progress, ticked per entry (a stop point)


def is_folder(entry: os.DirEntry) -> bool:
    """DirEntry.is_dir() that says False, not raises, for a link loop."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def real_path(path: Path) -> tuple[str | None, str | None]:
    """(resolved path, None) or (None, reason) for a broken link or a link loop."""
    try:
        return os.path.realpath(path, strict=True), None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None, "symlink loop: the link leads back to itself"
        if error.errno == errno.ENOENT:
            return None, "broken symlink: its target does not exist"
        return None, f"unreadable: {error.strerror or error}"


def walk(folder: Path, rel: str, ancestors: frozenset[str], out: Walk) -> None:
    """Add every file under folder (rel: its path relative to the images folder) to out, sorted by name.

    ancestors holds the real paths of the folders being walked, the images folder included: a link
    to one of them is a loop.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        out.skipped.append((rel, f"unreadable folder: {error.strerror or error}"))
        return
    for entry in entries:
        if out.progress is not None:
            out.progress.tick(found=1)
        entry_rel = _join(rel, entry.name)
        if is_debris(entry.name, folder=is_folder(entry)):
            out.ignored.append(entry_rel)
            continue
        real, problem = real_path(Path(entry.path))
        if problem:
            out.skipped.append((entry_rel, problem))
        elif os.path.isdir(real):
            if real in ancestors:
                out.skipped.append((entry_rel, "symlink loop: links to a folder that contains it"))
            else:
                walk(Path(entry.path), entry_rel, ancestors | {real}, out)
        elif os.path.isfile(real):
            out.files.append((real, entry_rel))
        else:
            out.skipped.append((entry_rel, "not a regular file (device, pipe or socket)"))
