"""File-system habits every writer shares: atomic files, folders published by rename, stale-temp sweeps,
numbered versions; and the same file operations on any path tf.io.gfile understands (the feature cache).

One rule behind all of them: a reader (a later run, TF Serving polling a base path, another process)
sees a file or folder whole or not at all. Everything is first written under a name starting with
TEMP_PREFIX in the destination's own folder (so the rename stays on one file system, and TF Serving
ignores the non-numeric name), flushed to disk, then renamed into place.

A path with a scheme (`gs://`, `s3://`, `hdfs://`, `file://`, `ram://`...) goes through tf.io.gfile,
imported only then, so a local path keeps its fast path (os calls, mmap) and needs no TensorFlow.
Local paths are pathlib.Path, remote ones plain strings: Path("gs://b/x") would collapse the "//". On
object stores an object appears only once its upload is complete, and gfile.rename copies the finished
temp object, so a reader never sees half a file there either.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import BinaryIO

import numpy as np

log = logging.getLogger(__name__)

PathLike = str | Path
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


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a local file's bytes: the feature cache's key and the scan's duplicate test."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def csv_bytes(rows) -> bytes:
    """The bytes of a CSV file every writer of the project uses: UTF-8, RFC 4180 (CRLF line ends).

    Read back with Python's csv module (`open(path, encoding="utf-8", errors="surrogateescape",
    newline="")`) every cell is exactly what was written, whatever a file name holds: a comma, a quote,
    CR or LF (such cells are quoted; with "\n" alone as the line end the csv module leaves CR bare),
    and bytes that are not UTF-8 (Python's surrogate escapes, written back as the original bytes).
    Cells starting with =, +, - or @ are not altered: exact names are the contract (README).
    """
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8", "surrogateescape")


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
        move_into_place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(folder: Path, final: Path) -> None:
    """Rename a complete folder to `final` on the same file system, durably; raises AlreadyThere, leaving
    both untouched, when `final` exists (another writer won, or a version that must never be overwritten)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # os.rename would replace an empty folder
        raise AlreadyThere(f"{final} exists")
    try:
        os.rename(folder, final)  # atomic on one file system: the folder appears complete
    except OSError:
        if final.exists():  # another writer renamed its folder in between
            raise AlreadyThere(f"{final} exists") from None
        raise
    fsync_dir(final.parent)  # and the rename itself survives a power cut


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


# The same operations on local or remote (tf.io.gfile) paths, for the feature cache.

def _oserrors(function):
    """Raise gfile's errors (tf.errors.NotFoundError...) as OSError, so callers handle one family."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except OSError:
            raise
        except Exception as err:
            if type(err).__module__.startswith("tensorflow"):
                raise OSError(f"{type(err).__name__}: {err}") from err
            raise
    return wrapper


def is_remote(path: PathLike) -> bool:
    """True for a path with a scheme (gs://, s3://, file://...), which goes through tf.io.gfile."""
    return "://" in str(path)


def _gfile():
    import tensorflow as tf  # only for remote paths: the local cache stays TensorFlow-free

    return tf.io.gfile


def join(folder: PathLike, name: str) -> PathLike:
    """folder/name, a Path for local folders and a string for remote ones."""
    return f"{str(folder).rstrip('/')}/{name}" if is_remote(folder) else Path(folder) / name


def name_of(path: PathLike) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


@_oserrors
def makedirs(folder: PathLike) -> None:
    if is_remote(folder):
        _gfile().makedirs(str(folder))
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)


@_oserrors
def listdir(folder: PathLike) -> list[str]:
    """Names of the entries of folder (no trailing '/' for sub-folders of object stores)."""
    if is_remote(folder):
        return [name.rstrip("/") for name in _gfile().listdir(str(folder))]
    return os.listdir(folder)


@_oserrors
def exists(path: PathLike) -> bool:
    return _gfile().exists(str(path)) if is_remote(path) else os.path.exists(path)


@_oserrors
def mtime(path: PathLike) -> float:
    """Modification time in seconds since the epoch; raises OSError (or gfile's NotFoundError) if gone."""
    return _gfile().stat(str(path)).mtime_nsec / 1e9 if is_remote(path) else os.stat(path).st_mtime


@_oserrors
def size(path: PathLike) -> int:
    """A file's size in bytes; raises OSError (or gfile's NotFoundError) if it is gone."""
    return _gfile().stat(str(path)).length if is_remote(path) else os.stat(path).st_size


@_oserrors
def remove(path: PathLike) -> None:
    """Delete a file; a file already gone (another reader swept it) is fine."""
    try:
        _gfile().remove(str(path)) if is_remote(path) else os.unlink(path)
    except Exception:  # gfile raises tf.errors.NotFoundError, os FileNotFoundError
        if exists(path):
            raise


def open_binary(path: PathLike, mode: str = "rb") -> BinaryIO:
    """A binary file object; gfile's errors surface from its methods unconverted (see npy_header)."""
    return _gfile().GFile(str(path), mode) if is_remote(path) else open(path, mode)


@_oserrors
def publish(path: PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write data to path atomically (temp name in the same folder, flushed, then renamed).

    overwrite=False: raise FileExistsError (locally) or gfile's AlreadyExistsError if path exists.
    """
    if is_remote(path):
        folder, name = str(path)[: -len(name_of(path))], name_of(path)
        tmp = join(folder.rstrip("/") or ".", f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}")
        with _gfile().GFile(str(tmp), "wb") as f:
            f.write(data)
        try:
            _gfile().rename(str(tmp), str(path), overwrite=overwrite)
        except Exception:
            remove(tmp)
            raise
    elif overwrite:
        write_atomic(Path(path), data)
    else:  # link() refuses an existing target atomically; the temp name then goes away
        staged = write_atomic(temp_name(Path(path)), data)
        try:
            os.link(staged, path)
        finally:
            os.unlink(staged)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@_oserrors
def npy_header(path: PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) of a .npy file from its header; ValueError unless the file holds exactly that data.

    Reads a few hundred bytes and the file size, never the data: the index of a large cache on a
    bucket stays cheap.
    """
    with open_binary(path) as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    size = _gfile().stat(str(path)).length if is_remote(path) else os.path.getsize(path)
    if fortran or dtype.hasobject or size != offset + dtype.itemsize * int(np.prod(shape)):
        raise ValueError(f"{name_of(path)}: {size} bytes, expected a header of {offset} and {shape} {dtype}")
    return dtype, shape


@_oserrors
def load_npy(path: PathLike, mmap: bool = False) -> np.ndarray:
    """The array of a .npy file: memory-mapped locally when mmap, else read whole (always, when remote)."""
    if not is_remote(path):
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    with open_binary(path) as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


@_oserrors
def rmtree(folder: PathLike) -> None:
    """Delete a folder and everything under it; a folder already gone is fine."""
    if is_remote(folder):
        if _gfile().exists(str(folder)):
            _gfile().rmtree(str(folder))
    else:
        shutil.rmtree(folder, ignore_errors=True)
