"""Features in and out of the content-addressed cache.

The hub layer is frozen, so the feature vector of an image depends only on the image's bytes and on
the namespace: which module (handle or path and a fingerprint of its weights), the input size and
PREPROCESS_VERSION. Layout, one folder per namespace:

    <cache_dir>/<namespace>/namespace.json           what the namespace stands for (for people)
    <cache_dir>/<namespace>/<writer>-<n>.f32.npy     float32 [rows, D], the features of one shard
    <cache_dir>/<namespace>/<writer>-<n>.keys.npy    S64 [rows], SHA-256 hex of each image file

A shard is written as features first, then keys, each to a `.tmp-` name and moved into place with
os.replace, so the keys file is the commit mark: a reader trusts a shard only when both files load
and agree on the row count. A run killed at any moment leaves at worst a temp file or a features file
without keys, which readers skip. Writers share no mutable file (<writer> is pid + random), so two
runs can fill one cache at once; a key they both wrote is simply found twice. The same holds for
many machines writing one cache on a bucket: <cache_dir> may be any path tf.io.gfile understands
(gs://, s3://, hdfs://...); retrain.fs does the file operations and keeps local paths fast.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np

from retrain import fs
from retrain.fs import PathLike

log = logging.getLogger(__name__)

KEY_DTYPE = np.dtype("S64")  # hex digests: ASCII, so no trailing-NUL trouble of raw bytes in numpy "S"
SHARD_ROWS = 2048  # ~10 MB of 1280-wide features: a killed run loses at most this much work


def _identity(module_id: str, fingerprint: str, image_size: int, preprocess_version: int) -> dict:
    """Everything that decides the features of the same bytes: the one definition of a namespace."""
    return {"module": module_id, "fingerprint": fingerprint, "image_size": int(image_size),
            "preprocess": int(preprocess_version)}


def namespace(module_id: str, fingerprint: str, image_size: int, preprocess_version: int) -> str:
    """A short hex name that changes whenever the features of the same bytes could change."""
    ident = _identity(module_id, fingerprint, image_size, preprocess_version)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def for_module(cache_dir: PathLike, module_id: str, fingerprint: str, image_size: int,
               preprocess_version: int) -> FeatureCache:
    """The namespace of one module (handle or path, and fingerprint) at one input size and preprocessing.
    Anything else that changes the rows (an augmented view, a cut) extends the fingerprint."""
    return FeatureCache(cache_dir, namespace(module_id, fingerprint, image_size, preprocess_version),
                        describe=_identity(module_id, fingerprint, image_size, preprocess_version))


FEATURES, KEYS = ".f32.npy", ".keys.npy"


class FeatureCache:
    """The shards of one namespace folder, indexed by key; feature rows stay on disk (mmap when local)."""

    def __init__(self, cache_dir: PathLike, name: str, describe: dict | None = None) -> None:
        self.folder = fs.join(cache_dir, name)  # a Path when local, a string with a scheme otherwise
        fs.makedirs(self.folder)
        if describe is not None and not fs.exists(fs.join(self.folder, "namespace.json")):
            text = json.dumps(describe, indent=1, sort_keys=True).encode()
            fs.publish(fs.join(self.folder, "namespace.json"), text)
        self._shards: list[PathLike] = []  # features files; mapped only while rows are copied out of them
        self._dim: int | None = None
        self._where: dict[bytes, tuple[int, int]] = {}
        self.reload()

    def reload(self) -> None:
        """(Re)read every committed shard's keys; features files are only checked, not read."""
        self._shards, self._dim, self._where = [], None, {}
        names = fs.listdir(self.folder)
        for stem in sorted(n[: -len(KEYS)] for n in names if n.endswith(KEYS) and not n.startswith(".")):
            keys = self._open_shard(stem)
            if keys is None:
                continue
            number = len(self._shards)
            self._shards.append(fs.join(self.folder, stem + FEATURES))
            self._where.update(zip(keys.tolist(), zip([number] * len(keys), range(len(keys)))))
        self._sweep(names)
        log.debug("feature cache %s: %d entries in %d shards", self.folder, len(self._where), len(self._shards))

    def _open_shard(self, stem: str) -> np.ndarray | None:
        """The keys of a committed, intact shard (features of the right size and width), else None."""
        try:
            keys = fs.load_npy(fs.join(self.folder, stem + KEYS))
            dtype, shape = fs.npy_header(fs.join(self.folder, stem + FEATURES))
        except (OSError, ValueError, EOFError) as err:
            log.debug("skipping shard %s: %s", stem, err)
            return None
        if (keys.dtype != KEY_DTYPE or keys.ndim != 1 or dtype != np.float32 or len(shape) != 2
                or shape[0] != keys.shape[0] or shape[1] != (self._dim or shape[1])):
            log.debug("skipping shard %s: keys %s %s vs features %s %s", stem, keys.dtype, keys.shape, dtype, shape)
            return None
        self._dim = int(shape[1])
        return keys

    def _sweep(self, names: list[str]) -> None:
        """Delete temp files and uncommitted features left by writers dead for a day."""
        cutoff = time.time() - fs.STALE_SECONDS
        present = set(names)
        for name in names:
            orphan = name.endswith(FEATURES) and name[: -len(FEATURES)] + KEYS not in present
            if name.startswith(fs.TEMP_PREFIX) or orphan:
                path = fs.join(self.folder, name)
                try:
                    if 0 < fs.mtime(path) < cutoff:  # 0: the filesystem keeps no times (ram://)
                        fs.remove(path)
                except OSError:
                    pass  # another reader swept it first

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key.encode() in self._where

    @property
    def dim(self) -> int | None:
        """Feature width D of the cached rows, None while the namespace is empty."""
        return self._dim

    @property
    def keys_files(self) -> list[PathLike]:
        """The keys file of every committed shard, so that other processes can read the index in parallel."""
        return [fs.join(self.folder, fs.name_of(f)[: -len(FEATURES)] + KEYS) for f in self._shards]

    def read(self, keys: list[str], rows: list[int]):
        """Yield (rows, float32 [n, D] features) covering every (keys[i] -> rows[i]); all keys must be cached.

        Shard by shard, each mapped (or, remote, read) only while its rows are copied out, so resident
        memory stays at one shard however large the cache.
        """
        where = np.array([self._where[k.encode()] for k in keys], dtype=np.int64).reshape(-1, 2)
        rows_array = np.asarray(rows, dtype=np.int64)
        for number in np.unique(where[:, 0]):
            pick = where[:, 0] == number
            source = where[pick, 1]
            order = np.argsort(source)  # ascending offsets read the file front to back
            features = fs.load_npy(self._shards[number], mmap=True)
            yield rows_array[pick][order], np.array(features[source[order]])
            del features

    def writer(self, shard_rows: int = SHARD_ROWS) -> ShardWriter:
        return ShardWriter(self.folder, shard_rows)


class ShardWriter:
    """Collects (key, feature) rows and commits them as shards of shard_rows; use as a context manager.

    Each writer has its own file prefix (pid + random), so any number of writers, in processes or on
    machines, can fill one folder without sharing a file.
    """

    def __init__(self, folder: PathLike, shard_rows: int = SHARD_ROWS) -> None:
        self.folder, self.shard_rows = folder if fs.is_remote(folder) else Path(folder), shard_rows
        fs.makedirs(self.folder)
        self._prefix = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._keys: list[str] = []
        self._features: list[np.ndarray] = []
        self._count = 0
        self.shards_written = 0

    def add(self, keys: list[str], features: np.ndarray) -> None:
        """Queue rows (features float32 [len(keys), D]); commits a shard whenever shard_rows are queued."""
        self._keys.extend(keys)
        self._features.append(np.asarray(features, dtype=np.float32))
        self._count += len(keys)
        if self._count >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Commit the queued rows as one shard: features first, then keys (the commit mark, never replaced)."""
        if not self._count:
            return
        stem = f"{self._prefix}-{self.shards_written:05d}"
        fs.publish(fs.join(self.folder, stem + FEATURES), fs.npy_bytes(np.concatenate(self._features)))
        keys = fs.npy_bytes(np.array(self._keys, dtype=KEY_DTYPE))
        fs.publish(fs.join(self.folder, stem + KEYS), keys, overwrite=False)
        self.shards_written += 1
        self._keys, self._features, self._count = [], [], 0

    def __enter__(self) -> ShardWriter:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Rows computed before an error are still good features: keep them.
        self.flush()
