"""The Beam transforms of retrain's extraction: hash, join with the cache, batch, extract, report.

    paths -> (SHA-256 of the bytes, path) -> join with the cached keys -> one path per missing key
          -> batches -> decode (retrain.images.preprocess) + engine (retrain.backbone.engines) -> cache shards
Workers load the engine once (DoFn.setup) and each bundle writes its own shards through
retrain.features.cache.ShardWriter, so "features first, keys last, atomic" holds with any number of writers.
retrain.beam.launch launches it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

import apache_beam as beam
from apache_beam.metrics.metric import Metrics

from retrain import fs
from retrain.beam.worker import WorkerSpec, decode_items, open_worker_engine
from retrain.features.cache import ShardWriter

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 60.0
METRICS = "retrain"  # namespace of the counters: cached, duplicates, extracted, skipped, busy_ms, cpu_ms


def digest(path: str) -> tuple[str, str]:
    """(SHA-256 hex of the file's bytes, path): the cache key retrain.features.extraction.file_digest computes."""
    sha = hashlib.sha256()
    with fs.open_binary(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest(), path


def digest_line(line: str) -> tuple[str, str]:
    """(key, line) for one JSON line of the path list retrain.beam.launch writes. The path stays JSON-encoded
    while it travels between steps: Beam encodes strings as UTF-8, and a file name that is not UTF-8
    (surrogate escapes) would stop its coder."""
    return digest(json.loads(line))[0], line


def shard_keys(keys_file: str):
    """(key, None) for every key of one committed shard."""
    yield from ((key.decode(), None) for key in fs.load_npy(keys_file).tolist())


def first_missing(joined: tuple[str, dict]):
    """One (key, path) per key not in the cache (paths JSON-encoded, the first in order); counts cached
    and duplicate files."""
    key, groups = joined
    paths = sorted(groups["paths"])
    if not paths:
        return
    if list(groups["cached"]):
        Metrics.counter(METRICS, "cached").inc(len(paths))
        return
    Metrics.counter(METRICS, "duplicates").inc(len(paths) - 1)
    yield key, paths[0]


class ExtractFn(beam.DoFn):
    """Batches of (key, JSON-encoded path) -> cache shards; yields a "path: reason" line (as JSON) per file skipped."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec  # plain values only: this object is pickled to every worker

    def setup(self) -> None:
        # Once per worker process: the engine (module load, LiteRT conversion or GPU) is the costly part.
        self._engine, self._decode = open_worker_engine(self.spec)

    def start_bundle(self) -> None:
        self._writer = None  # created on the first rows: a bundle of cached keys writes no file
        self._count, self._start = 0, time.perf_counter()
        self._said = self._start

    def process(self, batch: list[tuple[str, str]]):
        start, cpu = time.perf_counter(), time.process_time()
        keys, images, skipped = decode_items(self._decode, [(key, json.loads(line)) for key, line in batch])
        if keys:
            features = self._engine(images)
            if self._writer is None:
                self._writer = ShardWriter(self.spec.cache_folder)
            self._writer.add(keys, features)
        Metrics.counter(METRICS, "extracted").inc(len(keys))
        Metrics.counter(METRICS, "skipped").inc(len(skipped))
        Metrics.counter(METRICS, "busy_ms").inc(int(1000 * (time.perf_counter() - start)))
        Metrics.counter(METRICS, "cpu_ms").inc(int(1000 * (time.process_time() - cpu)))  # all engine threads
        self._count += len(keys)
        if time.perf_counter() - self._said >= PROGRESS_SECONDS:  # a bundle can be hours of work
            self._said = time.perf_counter()
            log.info("worker: %d images in this bundle, %.0f images/s", self._count,
                     self._count / (self._said - self._start))
        # JSON (ASCII): a file name that is not UTF-8 would stop WriteToText's encoder.
        yield from (json.dumps(line) for line in skipped)

    def finish_bundle(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        if self._count:
            seconds = time.perf_counter() - self._start
            log.info("bundle: %d images in %.1f s (%.0f images/s, %s)", self._count, seconds,
                     self._count / max(seconds, 1e-9), self._engine.name)


def build(pipeline, paths_glob: str, keys_files: list[str], spec: WorkerSpec, skipped_prefix: str) -> None:
    """Add the extraction steps to a beam.Pipeline."""
    keyed = (pipeline | "paths" >> beam.io.ReadFromText(paths_glob) | "spread paths" >> beam.Reshuffle()
             | "hash bytes" >> beam.Map(digest_line))
    cached = pipeline | "shards" >> beam.Create(keys_files) | "cached keys" >> beam.FlatMap(shard_keys)
    missing = ({"paths": keyed, "cached": cached} | "join" >> beam.CoGroupByKey()
               | "missing keys" >> beam.FlatMap(first_missing))
    (missing | "spread work" >> beam.Reshuffle()
     | "batch" >> beam.BatchElements(min_batch_size=spec.batch_size, max_batch_size=spec.batch_size)
     | "extract" >> beam.ParDo(ExtractFn(spec))
     | "report skipped" >> beam.io.WriteToText(skipped_prefix))
