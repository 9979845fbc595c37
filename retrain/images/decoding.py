"""Image files -> float32 pixels by preprocess.decode_batch; what does not decode is skipped with a reason."""
from __future__ import annotations

import collections
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import fs
from retrain.errors import reason, skip_line
from retrain.images import preprocess
from retrain.images.headers import JPEG_MAGIC
from retrain.inputs import formats
from retrain.inputs.skipped import categorized

log = logging.getLogger(__name__)
# File bytes per decode call: two photos of 3 MB (each call costs ~1 ms of graph overhead against ~35 ms
# per photo), or a whole batch of small images in one call. Runs go to every core at once.
_RUN_BYTES = 8 << 20
_pool_lock = threading.Lock()
_shared: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One decoding thread per core for the whole process, made on first use (so after any fork).

    Its tasks only decode, never wait on it, so callers on any thread (decode_ahead's) cannot deadlock it.
    """
    global _shared
    with _pool_lock:
        if _shared is None:
            _shared = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode")
        return _shared


@functools.cache
def _traced(image_size: int, max_pixels: int, jpeg_only: bool):
    """preprocess.decode_batch traced once per process, size and graph (the full one, or the JPEG-only one):
    every Decoder (extraction, parity, Beam) shares them.

    Without autograph: preprocess spells its control flow with tf.cond, and converting it tripled the trace.
    """
    return tf.function(lambda images: preprocess.decode_batch(images, image_size, max_pixels, jpeg_only),
                       input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)


def file_sizes(paths: list[Path]) -> list[int]:
    """Each file's size on disk in bytes; 0 for one that cannot be looked up (its read reports why)."""
    sizes = []
    for path in paths:
        try:
            sizes.append(fs.size(path))
        except OSError:
            sizes.append(0)
    return sizes


def by_bytes(sizes: list[int], limit: int, count: int | None = None) -> list[list[int]]:
    """Indices of files (by their sizes) in consecutive groups of at most `limit` bytes and `count` files;
    a larger file is a group of its own."""
    groups: list[list[int]] = []
    total = 0
    for i, size in enumerate(sizes):
        if not groups or total + size > limit or (count is not None and len(groups[-1]) >= count):
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += size
    return groups


def _is_jpeg(data: bytes) -> bool:
    """Whether these bytes go to the JPEG-only graph: they start as a JPEG (the graph's own format test)."""
    return data.startswith(JPEG_MAGIC)


# A valid 1 x 1 PNG: decoding it runs the whole graph once (tracing, then grappler on the first call).
_ONE_PIXEL_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944"
                               "4154789c63f8ffff3f0005fe02fe0def46b80000000049454e44ae426082")


class Decoder:
    """Image files -> float32 [m, S, S, 3] pixels by preprocess.decode_batch, skipping what does not decode.

    Batched in traced calls: on 28x28 PNGs one call per batch decoded 2,500 images/s against 700 for one
    call per image, on 800x600 JPEGs 450 against 200 (bench/decode.py; 2 cores, same process, interleaved).
    Photos are split into runs of a few files that decode on every core at once: a 12-MP JPEG costs ~35 ms
    of Huffman decoding even at 1/8 scale, and one call decodes its files one after another.
    JPEGs go through preprocess's JPEG-only graph, every other file through the full one (the serving
    graph's): the same pixels either way, and a folder of photos traces and optimises 436 ops, not 1,164.
    """

    def __init__(self, image_size: int, max_pixels: int) -> None:
        self.image_size, self.max_pixels = image_size, max_pixels

    def _decode(self, blobs: list[bytes], jpeg_only: bool) -> tf.Tensor:
        return _traced(self.image_size, self.max_pixels, jpeg_only)(tf.constant(blobs, tf.string))

    def prepare(self, sample: Path | None = None) -> Future:
        """Trace and optimise on the pool now (0.5 to 1 s, once per process and size) the graph that
        `sample`'s format takes (the full one without a sample), so that it overlaps other start-up work
        instead of delaying the first batch."""
        return _pool().submit(self._warm_up, sample)

    def _warm_up(self, sample: Path | None) -> tf.Tensor:
        jpeg = False
        if sample is not None:
            try:
                with fs.open_binary(sample) as handle:
                    jpeg = _is_jpeg(handle.read(len(JPEG_MAGIC)))
            except OSError:
                pass  # the decode reports it
        try:
            blob = tf.io.encode_jpeg(tf.zeros([1, 1, 3], tf.uint8)).numpy() if jpeg else _ONE_PIXEL_PNG
            return self._decode([blob], jpeg)
        except Exception:  # a known-good image failed: our bug, and callers do not wait to see it
            log.exception("decoder warm-up failed")
            raise

    def __call__(self, paths: list[Path], skipped: list[tuple[Path, str]],
                 sizes: list[int] | None = None) -> tuple[np.ndarray, list[int]]:
        """(pixels of the files that decode, their indices into paths); the others are added to `skipped`.
        sizes: the files' file_sizes when the caller has them, so no file is looked up twice.

        Files go in runs of at most _RUN_BYTES of file bytes (by their size on disk; small images all in
        one run), decoded on the shared pool; each run reads its own files, so only the runs being decoded
        hold file bytes. One bad file does not cost its run: when a run fails, each of its files is
        decoded alone. Skips are added in path order, whatever order the runs finish in.
        """
        runs = by_bytes(file_sizes(paths) if sizes is None else sizes, _RUN_BYTES)
        futures = [_pool().submit(self._run, [(i, paths[i]) for i in run]) for run in runs]
        parts, kept = [], []
        try:
            for future in futures:
                pixels, good, own = future.result()
                parts.extend(pixels)
                kept.extend(good)
                for path, why in own:
                    _skip(skipped, path, why)
        finally:
            for future in futures:  # an error or a stop: runs not yet started are dropped
                future.cancel()
        empty = np.zeros((0, self.image_size, self.image_size, 3), np.float32)
        return (np.concatenate(parts) if parts else empty), kept

    def _run(self, run: list[tuple[int, Path]]) -> tuple[list[np.ndarray], list[int], list[tuple[Path, str]]]:
        """(pixel arrays, indices that decoded, (path, reason) skips) of one run, read and decoded here."""
        blobs, skips = [], []
        for i, path in run:
            try:
                with fs.open_binary(path) as handle:  # local, or any tf.io.gfile URL
                    blobs.append((i, path, handle.read()))
            except OSError as err:
                skips.append((i, path, f"unreadable: {err.strerror or err}"))
        parts, good = [], []
        for jpeg in (True, False):
            group = [entry for entry in blobs if _is_jpeg(entry[2]) == jpeg]
            try:
                if group:
                    parts.append(self._decode([blob for _, _, blob in group], jpeg).numpy())
                    good.extend(i for i, _, _ in group)
            except tf.errors.InvalidArgumentError:
                for i, path, blob in group:
                    try:
                        parts.append(self._decode([blob], jpeg)[0:1].numpy())
                        good.append(i)
                    except tf.errors.InvalidArgumentError as err:
                        skips.append((i, path, self._why(path, err)))
        if len(parts) > 1:  # back in path order: JPEGs and the rest were decoded apart
            order = np.argsort(good, kind="stable")
            parts, good = [np.concatenate(parts)[order]], [good[k] for k in order]
        return parts, good, [(path, why) for _, path, why in sorted(skips, key=lambda s: s[0])]

    def _why(self, path: Path, error: Exception) -> str:
        """The scan's own verdict on a local file the graph refused (same category, same words, whichever stage
        found it); else TensorFlow's message under a scan category (its words cannot tell truncated from corrupt)."""
        verdict = None if fs.is_remote(path) else formats.check(Path(path), self.max_pixels)
        return verdict or categorized(reason(error))


def decode_ahead(decode: Callable[[list, list], tuple[np.ndarray, list[int]]], batches: Iterable[list],
                 skipped: list[tuple[Path, str]], depth: int = 2) -> Iterator[tuple[np.ndarray, list[int]]]:
    """decode(batch) for each batch, in order, computed on background threads while the caller uses the last.

    The caller (the engine) runs while the next batches decode, so on photos, where decoding costs
    several times the backbone, neither waits for the other. Each decode spreads its runs over every
    core (Decoder); `depth` batches are decoding at once, so the pool never idles while one batch
    waits for its last run. Memory stays bounded: a run holds a few files' bytes, and at most depth + 1
    batches wait as small float32 [n, S, S, 3] pixels. Skips are added to `skipped` in batch order.
    Closing the iterator early (a stop, an error) cancels what has not started and waits for the rest.
    """
    pool = ThreadPoolExecutor(depth, thread_name_prefix="decode-batch")
    pending: collections.deque = collections.deque()
    try:
        for batch in batches:
            own: list[tuple[Path, str]] = []  # this batch's skips, merged in order when it is handed over
            pending.append((own, pool.submit(decode, batch, own)))
            if len(pending) > depth:
                yield _handed(pending.popleft(), skipped)
        while pending:
            yield _handed(pending.popleft(), skipped)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _handed(entry, skipped: list[tuple[Path, str]]) -> tuple[np.ndarray, list[int]]:
    own, future = entry
    result = future.result()
    skipped.extend(own)
    return result


def _skip(skipped: list[tuple[Path, str]], path: Path, why: str) -> None:
    """The caller reports the skip with the path as the user knows it (retrain.inputs.gather.relative)."""
    skipped.append((path, why))
    log.debug(skip_line(path, why))
