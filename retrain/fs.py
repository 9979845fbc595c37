"""File-system habits every writer shares: atomic files, folders published by rename, stale-temp sweeps,
numbered versions.

One rule behind all of them: a reader (a later run, TF Serving polling a base path, another process)
sees a file or folder whole or not at all. Everything is first written under a name starting with
TEMP_PREFIX in the destination's own folder (so the rename stays on one file system, and TF Serving
ignores the non-numeric name), flushed to disk, then renamed into place.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
STALE_SECONDS = 24 * 3600  # temp files this old belong to a dead writer, not to a slow one


class AlreadyThere(FileExistsError):
    """staged_dir's destination existed when its folder was to be renamed into place."""


def temp_name(final: Path) -> Path:
    """A unique hidden sibling of `final` for staging it: .tmp-<pid>-<random>-<name>."""
    return final.with_name(f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}")


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under root to disk, so a power cut cannot publish empty files."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(folder))


@contextlib.contextmanager
def atomic_file(path: Path):
    """Yield a binary file that appears at `path`, complete, only when the block ends without error.

    An existing file at `path` is replaced in one step; on error nothing changes and the temp is removed.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write bytes (or UTF-8 text) to `path` atomically; returns path."""
    with atomic_file(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


@contextlib.contextmanager
def staged_dir(final: Path):
    """Yield an empty hidden folder beside `final`; on success it is flushed and renamed to `final`.

    Raises AlreadyThere, leaving the existing folder untouched, when `final` exists by then
    (another writer won, or a version that must never be overwritten). On error the staging folder
    is removed; a hard kill leaves only a hidden TEMP_PREFIX folder, which sweep_stale removes later.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_name(final)
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        if final.exists():  # os.rename would replace an empty folder
            raise AlreadyThere(f"{final} exists")
        try:
            os.rename(staging, final)  # atomic on one file system: the folder appears complete
        except OSError:
            if final.exists():  # another writer renamed its folder in between
                raise AlreadyThere(f"{final} exists") from None
            raise
        fsync_dir(final.parent)  # and the rename itself survives a power cut
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sweep_stale(folder: Path, older_than_s: float = STALE_SECONDS) -> int:
    """Delete TEMP_PREFIX files and folders in `folder` not touched for older_than_s; returns how many."""
    cutoff, removed = time.time() - older_than_s, 0
    for path in Path(folder).glob(TEMP_PREFIX + "*"):
        try:
            if path.lstat().st_mtime < cutoff:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed += 1
        except OSError:
            pass  # another process swept it first
    if removed:
        log.debug("removed %d stale temp entries in %s", removed, folder)
    return removed


def numbered(folder: Path) -> dict[int, Path]:
    """Children of `folder` whose names are plain decimal integers (TF Serving's versions), by number."""
    if not Path(folder).is_dir():
        return {}
    return {int(p.name): p for p in Path(folder).iterdir() if re.fullmatch(r"[0-9]+", p.name)}


def make_numbered(parent: Path, start: int, prefix: str = "") -> tuple[int, Path]:
    """Create parent/<prefix><n> for the first free n >= start; return (n, that folder). mkdir is
    atomic, so two processes doing this at once never get the same n."""
    number = start
    while True:
        try:
            (Path(parent) / f"{prefix}{number}").mkdir()
            return number, Path(parent) / f"{prefix}{number}"
        except FileExistsError:
            number += 1
