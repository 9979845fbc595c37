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
runs can fill one cache at once; a key they both wrote is simply found twice.
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

log = logging.getLogger(__name__)

KEY_DTYPE = np.dtype("S64")  # hex digests: ASCII, so no trailing-NUL trouble of raw bytes in numpy "S"
SHARD_ROWS = 2048  # ~10 MB of 1280-wide features: a killed run loses at most this much work
STALE_SECONDS = 24 * 3600  # temp files this old belong to a dead writer, not to a slow one


def namespace(module_id: str, fingerprint: str, image_size: int, preprocess_version: int) -> str:
    """A short hex name that changes whenever the features of the same bytes could change."""
    ident = {"module": module_id, "fingerprint": fingerprint, "image_size": int(image_size),
             "preprocess": int(preprocess_version)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """np.save to a temp name, flushed to disk, then renamed: readers see all of it or nothing."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FeatureCache:
    """The shards of one namespace folder, indexed by key; feature rows stay on disk (mmap)."""

    def __init__(self, cache_dir: Path, name: str, describe: dict | None = None) -> None:
        self.folder = Path(cache_dir) / name
        self.folder.mkdir(parents=True, exist_ok=True)
        if describe is not None and not (self.folder / "namespace.json").exists():
            tmp = self.folder / f".tmp-{uuid.uuid4().hex}-namespace.json"
            tmp.write_text(json.dumps(describe, indent=1, sort_keys=True))
            os.replace(tmp, self.folder / "namespace.json")
        self._shards: list[Path] = []  # features files; mapped only while rows are copied out of them
        self._dim: int | None = None
        self._where: dict[bytes, tuple[int, int]] = {}
        self.reload()

    def reload(self) -> None:
        """(Re)read every committed shard's keys; features files are only checked, not read."""
        self._shards, self._dim, self._where = [], None, {}
        for keys_file in sorted(self.folder.glob("*.keys.npy")):
            keys = self._open_shard(keys_file)
            if keys is None:
                continue
            number = len(self._shards)
            self._shards.append(keys_file.with_name(keys_file.name[: -len(".keys.npy")] + ".f32.npy"))
            self._where.update(zip(keys.tolist(), zip([number] * len(keys), range(len(keys)))))
        self._sweep()
        log.debug("feature cache %s: %d entries in %d shards", self.folder, len(self._where), len(self._shards))

    def _open_shard(self, keys_file: Path) -> np.ndarray | None:
        """The keys of a committed, intact shard (features of the right size and width), else None."""
        features_file = keys_file.with_name(keys_file.name[: -len(".keys.npy")] + ".f32.npy")
        try:
            keys = np.load(keys_file, allow_pickle=False)
            features = np.load(features_file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            log.debug("skipping shard %s: %s", keys_file.name, err)
            return None
        if (keys.dtype != KEY_DTYPE or keys.ndim != 1 or features.dtype != np.float32 or features.ndim != 2
                or features.shape[0] != keys.shape[0] or features.shape[1] != (self._dim or features.shape[1])):
            log.debug("skipping shard %s: keys %s %s vs features %s %s", keys_file.name,
                      keys.dtype, keys.shape, features.dtype, features.shape)
            return None
        self._dim = int(features.shape[1])
        return keys

    def _sweep(self) -> None:
        """Delete temp files and uncommitted features left by writers dead for a day."""
        cutoff = time.time() - STALE_SECONDS
        for path in self.folder.iterdir():
            orphan = path.name.endswith(".f32.npy") and not path.with_name(
                path.name[: -len(".f32.npy")] + ".keys.npy").exists()
            if path.name.startswith(".tmp-") or orphan:
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
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

    def read(self, keys: list[str], rows: list[int]):
        """Yield (rows, float32 [n, D] features) covering every (keys[i] -> rows[i]); all keys must be cached.

        Shard by shard, each mapped only while its rows are copied out, so resident memory stays at one
        shard however large the cache.
        """
        where = np.array([self._where[k.encode()] for k in keys], dtype=np.int64).reshape(-1, 2)
        rows_array = np.asarray(rows, dtype=np.int64)
        for number in np.unique(where[:, 0]):
            pick = where[:, 0] == number
            source = where[pick, 1]
            order = np.argsort(source)  # ascending offsets read the file front to back
            features = np.load(self._shards[number], mmap_mode="r")
            yield rows_array[pick][order], np.array(features[source[order]])
            del features

    def writer(self, shard_rows: int = SHARD_ROWS) -> ShardWriter:
        return ShardWriter(self.folder, shard_rows)


class ShardWriter:
    """Collects (key, feature) rows and commits them as shards of shard_rows; use as a context manager."""

    def __init__(self, folder: Path, shard_rows: int = SHARD_ROWS) -> None:
        self.folder, self.shard_rows = Path(folder), shard_rows
        self.folder.mkdir(parents=True, exist_ok=True)
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
        """Commit the queued rows as one shard: features first, then keys (the commit mark)."""
        if not self._count:
            return
        stem = self.folder / f"{self._prefix}-{self.shards_written:05d}"
        _atomic_save(stem.with_name(stem.name + ".f32.npy"), np.concatenate(self._features))
        _atomic_save(stem.with_name(stem.name + ".keys.npy"), np.array(self._keys, dtype=KEY_DTYPE))
        self.shards_written += 1
        self._keys, self._features, self._count = [], [], 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Rows computed before an error are still good features: keep them.
        self.flush()
