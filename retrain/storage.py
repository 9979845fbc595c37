"""File operations of the feature cache on a local folder or on any path tf.io.gfile understands.

A path with a scheme (`gs://`, `s3://`, `hdfs://`, `file://`, `ram://`...) goes through tf.io.gfile,
imported only then, so a local cache keeps its fast path (os calls, mmap) and needs no TensorFlow.
Local paths are pathlib.Path, remote ones plain strings: Path("gs://b/x") would collapse the "//".

Atomic publication, the rule the cache builds on: write to a `.tmp-` name in the same folder, then
rename. Locally os.replace is atomic. On object stores an object appears only once its upload is
complete, and gfile.rename copies the finished temp object, so a reader never sees half a file there
either; overwrite=False refuses to replace a file that already exists (a commit mark stays the first).
"""
from __future__ import annotations

import functools
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

import numpy as np

PathLike = str | Path
TEMP_PREFIX = ".tmp-"


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
    folder, name = str(path)[: -len(name_of(path))], name_of(path)
    tmp = join(folder.rstrip("/") or ".", f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}")
    if is_remote(path):
        with _gfile().GFile(str(tmp), "wb") as f:
            f.write(data)
        try:
            _gfile().rename(str(tmp), str(path), overwrite=overwrite)
        except Exception:
            remove(tmp)
            raise
        return
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if overwrite:
        os.replace(tmp, path)
    else:  # link() refuses an existing target atomically; the temp name then goes away
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)


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
