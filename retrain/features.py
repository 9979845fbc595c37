"""Image files -> feature vectors of the frozen module, each image through the backbone once, ever.

Files are keyed by the SHA-256 of their bytes, so renamed, moved or duplicated images are found in
the cache and an edited image is not. Only the missing ones are decoded (retrain.preprocess, the very
function the serving graph embeds) and run through an engine (retrain.engines), batch by batch.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import engines, preprocess
from retrain.cache import FeatureCache, namespace
from retrain.errors import RetrainError

log = logging.getLogger(__name__)

MEMMAP_BYTES = 64 << 20  # results larger than this go to a file under workdir, not to RAM
PROGRESS_SECONDS = 5.0


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_features(paths: list[Path], *, module, image_size: int, engine: str, cache_dir: Path | None,
                     batch_size: int, max_pixels: int, workdir: Path) -> np.ndarray:
    """float32 [len(paths), D] features in the order of paths, duplicates included.

    Above MEMMAP_BYTES the result is a read-only np.memmap of a .npy file under workdir (read it in
    chunks with read_rows); the caller owns workdir and that file. module has .handle, .path (local
    SavedModel) and .fingerprint; engine is auto|litert|tf; cache_dir None neither reads nor writes the cache.
    Raises RetrainError for a file that is not a decodable image.
    """
    if not paths:
        return np.zeros([0, module.feature_dim or 0], np.float32)
    rows: dict[str, list[int]] = {}  # content digest -> every position holding those bytes
    for i, path in enumerate(paths):
        rows.setdefault(file_digest(path), []).append(i)
    cache = _open_cache(cache_dir, module, image_size) if cache_dir is not None else None
    cached = [key for key in rows if cache is not None and key in cache]
    missing = [key for key in rows if cache is None or key not in cache]
    log.info("features: %s cached, %s to extract", f"{sum(len(rows[k]) for k in cached):,}",
             f"{sum(len(rows[k]) for k in missing):,}")
    runner = engines.open_engine(engine, module, image_size, batch_size) if missing else None
    out = _Result(len(paths), runner.dim if runner else cache.dim, workdir)
    if cached:
        for dest, features in cache.read([k for k in cached for _ in rows[k]], [r for k in cached for r in rows[k]]):
            out.put(dest, features)
    if missing:
        with cache.writer() if cache is not None else nullcontext() as writer:
            for keys, features in _run(runner, [(key, paths[rows[key][0]]) for key in missing], image_size,
                                       batch_size, max_pixels):
                copies = [len(rows[key]) for key in keys]  # duplicates get the row of their first path
                out.put(np.concatenate([rows[key] for key in keys]), np.repeat(features, copies, axis=0))
                if writer is not None:
                    writer.add(keys, features)
    return out.finish()


def read_rows(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float32 [len(rows), D] copy of features[rows] for a result of extract_features.

    Indexing the returned memmap directly keeps every page it touched mapped, so an epoch over 60,000
    rows leaves ~300 MB counted as resident; this reads through a short-lived mapping instead.
    """
    if not isinstance(features, np.memmap):
        return np.asarray(features[rows], np.float32)
    mapping = np.load(features.filename, mmap_mode="r")
    try:
        return np.array(mapping[rows], np.float32)
    finally:
        del mapping


def _open_cache(cache_dir: Path, module, image_size: int) -> FeatureCache:
    """The cache namespace of this module at this size and preprocessing."""
    ident = dict(module=module.handle or module.path, fingerprint=module.fingerprint, image_size=image_size,
                 preprocess=preprocess.PREPROCESS_VERSION)
    cache = FeatureCache(cache_dir, namespace(*ident.values()), describe=ident)
    log.debug("feature cache %s: %d entries", cache.folder, len(cache))
    return cache


class _Result:
    """The [n, D] float32 result: an array when small, else a .npy file under workdir.

    The file is filled with positioned writes, not through a mapping, and handed back as a read-only
    np.memmap: its pages then count as resident memory only where the caller reads them, so a
    60,000-row warm run does not hold 300 MB of features just for having written them.
    """

    def __init__(self, n: int, dim: int, workdir: Path) -> None:
        self.path = None
        if n * dim * 4 <= MEMMAP_BYTES:
            self.array = np.zeros([n, dim], np.float32)
            return
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.path = Path(workdir) / f"features-{uuid.uuid4().hex[:8]}.npy"
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=(n, dim))
        self.offset, self.row_bytes = header.offset, dim * 4
        del header  # sized (sparse) file with its .npy header; the mapping is not kept
        self.file = open(self.path, "r+b")

    def put(self, rows: np.ndarray, features: np.ndarray) -> None:
        """result[rows[i]] = features[i]."""
        if self.path is None:
            self.array[rows] = features
            return
        for row, feature in zip(rows.tolist(), np.ascontiguousarray(features, np.float32)):
            os.pwrite(self.file.fileno(), feature.tobytes(), self.offset + row * self.row_bytes)

    def finish(self) -> np.ndarray:
        if self.path is None:
            return self.array
        self.file.close()
        log.debug("features written to %s", self.path)
        return np.load(self.path, mmap_mode="r")


def _decoder(image_size: int, max_pixels: int):
    """A traced function: string [n] of encoded images -> float32 [n, S, S, 3], by preprocess.decode_batch.

    Batched in one call: on 28x28 PNGs it decoded 2,500 images/s against 700 for one traced call per
    image, on 800x600 JPEGs 450 against 200 (bench/decode.py; 2 cores, same process, interleaved).
    """
    return tf.function(lambda images: preprocess.decode_batch(images, image_size, max_pixels),
                       input_signature=[tf.TensorSpec([None], tf.string)])


def _decode(decoder, items: list[tuple[str, Path]]) -> np.ndarray:
    """Decode one batch -> float32 [n, S, S, 3]; on failure, retry one by one to name the file."""
    blobs = [Path(path).read_bytes() for _, path in items]
    try:
        return decoder(tf.constant(blobs)).numpy()
    except tf.errors.InvalidArgumentError:
        for (_, path), blob in zip(items, blobs):
            try:
                decoder(tf.constant([blob]))
            except tf.errors.InvalidArgumentError as err:
                raise RetrainError(f"{path}: found bytes that do not decode as an image "
                                   f"({err.message.splitlines()[0]}), expected JPEG, PNG, GIF, BMP or still WebP") from None
        raise


def _run(runner, items: list[tuple[str, Path]], image_size: int, batch_size: int, max_pixels: int):
    """Yield (keys, float32 [n, D]) batch by batch: decode a batch, run it, then the next one.

    Serial on purpose. The engine already keeps every core busy (XNNPACK runs one thread per core), so a
    decoding thread can only take cores from it: on 2 cores a producer thread one batch ahead cost
    1-1.5 ms more CPU per image and was no faster (docs/benchmarks.md), as tf.data prefetching was.
    """
    decoder = _decoder(image_size, max_pixels)
    progress = _Progress(len(items), runner.name)
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        yield [key for key, _ in batch], runner(_decode(decoder, batch))
        progress.update(len(batch))
    progress.done()


class _Progress:
    """Logs images/s and the time left every few seconds, and a summary at the end."""

    def __init__(self, total: int, engine: str) -> None:
        self.total, self.engine, self.count = total, engine, 0
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self.last >= PROGRESS_SECONDS and self.count < self.total:
            self.last = now
            rate = self.count / (now - self.start)
            left = (self.total - self.count) / rate
            log.info("extracting (%s): %s/%s images, %.0f images/s, %d:%02d left", self.engine,
                     f"{self.count:,}", f"{self.total:,}", rate, left // 60, left % 60)

    def done(self) -> None:
        seconds = time.perf_counter() - self.start
        log.info("extracted %s images in %.1f s (%.0f images/s, %s)", f"{self.count:,}", seconds,
                 self.count / max(seconds, 1e-9), self.engine)
