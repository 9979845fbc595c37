"""Image files -> float32 pixels by preprocess.decode_batch; what does not decode is skipped with a reason."""
from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import fs
from retrain.errors import reason, skip_line
from retrain.images import preprocess
from retrain.inputs import formats
from retrain.inputs.skipped import categorized

log = logging.getLogger(__name__)
_CALL_BYTES = 48 << 20  # file bytes per decode call: 16 photos of 3 MB, any number of small images


class Decoder:
    """Image files -> float32 [m, S, S, 3] pixels by preprocess.decode_batch, skipping what does not decode.

    Batched in one traced call: on 28x28 PNGs it decoded 2,500 images/s against 700 for one traced call
    per image, on 800x600 JPEGs 450 against 200 (bench/decode.py; 2 cores, same process, interleaved).
    """

    def __init__(self, image_size: int, max_pixels: int) -> None:
        self.image_size, self.max_pixels = image_size, max_pixels
        self._decode = tf.function(lambda images: preprocess.decode_batch(images, image_size, max_pixels),
                                   input_signature=[tf.TensorSpec([None], tf.string)])

    def __call__(self, paths: list[Path], skipped: list[tuple[Path, str]]) -> tuple[np.ndarray, list[int]]:
        """(pixels of the files that decode, their indices into paths); the others are added to `skipped`.

        Files are read and decoded in runs of at most _CALL_BYTES of file bytes, so a batch of photos
        never holds all its files (and TensorFlow's copy of them) at once; small images still go in
        one call. One bad file does not cost its run: when a run fails, each of its files is decoded alone.
        """
        parts, kept, run, size = [], [], [], 0
        for i, path in enumerate(paths):
            try:
                with fs.open_binary(path) as handle:  # local, or any tf.io.gfile URL
                    blob = handle.read()
            except OSError as err:
                _skip(skipped, path, f"unreadable: {err.strerror or err}")
                continue
            if run and size + len(blob) > _CALL_BYTES:
                self._run(run, paths, skipped, parts, kept)
                run, size = [], 0
            run.append((i, blob))
            size += len(blob)
        if run:
            self._run(run, paths, skipped, parts, kept)
        empty = np.zeros((0, self.image_size, self.image_size, 3), np.float32)
        return (np.concatenate(parts) if parts else empty), kept

    def _run(self, run: list[tuple[int, bytes]], paths: list[Path], skipped: list[tuple[Path, str]],
             parts: list[np.ndarray], kept: list[int]) -> None:
        try:
            parts.append(self._decode(tf.constant([blob for _, blob in run], tf.string)).numpy())
            kept.extend(i for i, _ in run)
        except tf.errors.InvalidArgumentError:
            for i, blob in run:
                try:
                    parts.append(self._decode(tf.constant([blob]))[0:1].numpy())
                    kept.append(i)
                except tf.errors.InvalidArgumentError as err:
                    _skip(skipped, paths[i], self._why(paths[i], err))

    def _why(self, path: Path, error: Exception) -> str:
        """The scan's own verdict on a local file the graph refused (same category, same words, whichever stage
        found it); else TensorFlow's message under a scan category (its words cannot tell truncated from corrupt)."""
        verdict = None if fs.is_remote(path) else formats.check(Path(path), self.max_pixels)
        return verdict or categorized(reason(error))


def decode_ahead(decode: Decoder, batches: Iterable[list[Path]], skipped: list[tuple[Path, str]],
                 workers: int | None = None) -> Iterator[tuple[np.ndarray, list[int]]]:
    """decode(batch) for each batch, in order, computed on background threads while the caller uses the last.

    The caller (the engine) runs while the next batches decode, so on photos, where decoding costs
    several times the backbone, neither waits for the other. TensorFlow releases the GIL while it
    decodes, but one batch's decodes run one after another (the map's iterations share one chain of
    ops: 64 photos decoded in 2.1 s of wall and 2.3 s of CPU), so one worker per core keeps every core
    busy (two workers: 1.2 s of wall for the same 64). Memory stays bounded: at most
    `workers` batches decode at once (each with a few images at decode size in flight) and one more
    waits, decoded, as small float32 [n, S, S, 3] pixels. Skips are added to `skipped` in batch order.
    Closing the iterator early (a stop, an error) cancels what has not started and waits for the rest.
    """
    workers = workers or os.cpu_count() or 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
    pending: collections.deque = collections.deque()
    try:
        for batch in batches:
            own: list[tuple[Path, str]] = []  # this batch's skips, merged in order when it is handed over
            pending.append((own, pool.submit(decode, batch, own)))
            if len(pending) > workers:
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
