"""Feature extraction on Apache Beam: the same cache entries as a local run, from many workers at once.

The launcher lists the image files, resolves the module and opens the cache namespace; the pipeline
    paths -> (SHA-256 of the bytes, path) -> join with the cached keys -> one path per missing key
          -> batches -> decode (retrain.preprocess) + engine (retrain.engines) -> cache shards
runs on any Beam runner. Workers load the engine once (DoFn.setup) and each bundle writes its own
shards through retrain.cache.ShardWriter, so "features first, keys last, atomic" holds with any
number of writers, on a local folder or a bucket. Files that do not decode are skipped and reported
as "path: reason" lines. Locally it runs on the DirectRunner with worker processes.
"""
from __future__ import annotations

import hashlib
import logging
import time
import uuid
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter

from retrain import data, storage
from retrain.beam_worker import WorkerSpec, decode_items, open_worker_engine
from retrain.cache import FeatureCache, ShardWriter, for_module

log = logging.getLogger(__name__)

RUNNERS = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner"}
# --workers maps to each runner's own option; Spark takes its parallelism from the cluster.
WORKER_FLAGS = {"direct": "--direct_num_workers", "dataflow": "--num_workers", "flink": "--parallelism"}
METRICS = "retrain"


def list_images(images: str | Path) -> list[str]:
    """Image files under a class-per-folder tree, sorted. Local folders go through retrain.data.scan
    (its layout rules and skip of non-images); a path with a scheme is walked with tf.io.gfile and
    every non-hidden file under a non-hidden folder is taken (bad ones are skipped when decoded)."""
    if not storage.is_remote(images):
        return [str(e.path) for e in data.scan(Path(images))[1]]
    import tensorflow as tf

    found = []
    for root, dirs, files in tf.io.gfile.walk(str(images)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not any(part.startswith(".") for part in root[len(str(images)):].split("/")):
            found += [f"{root.rstrip('/')}/{f}" for f in sorted(files) if not f.startswith(".")]
    return found


def digest(path: str) -> tuple[str, str]:
    """(SHA-256 hex of the file's bytes, path): the cache key retrain.extract.file_digest computes."""
    sha = hashlib.sha256()
    with storage.open_binary(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest(), path


def shard_keys(keys_file: str):
    """(key, None) for every key of one committed shard."""
    yield from ((key.decode(), None) for key in storage.load_npy(keys_file).tolist())


def first_missing(joined: tuple[str, dict]):
    """One (key, path) per key not in the cache, the smallest path; counts cached and duplicate files."""
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
    """Batches of (key, path) -> cache shards; yields a "path: reason" line per file skipped."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec  # plain values only: this object is pickled to every worker

    def setup(self) -> None:
        # Once per worker process: the engine (module load, LiteRT conversion or GPU) is the costly part.
        self._engine, self._decode = open_worker_engine(self.spec)

    def start_bundle(self) -> None:
        self._writer = None  # created on the first rows: a bundle of cached keys writes no file
        self._count, self._start = 0, time.perf_counter()

    def process(self, batch: list[tuple[str, str]]):
        start = time.perf_counter()
        keys, images, skipped = decode_items(self._decode, batch)
        if keys:
            features = self._engine(images)
            if self._writer is None:
                self._writer = ShardWriter(self.spec.cache_folder)
            self._writer.add(keys, features)
        Metrics.counter(METRICS, "extracted").inc(len(keys))
        Metrics.counter(METRICS, "skipped").inc(len(skipped))
        Metrics.counter(METRICS, "busy_ms").inc(int(1000 * (time.perf_counter() - start)))
        self._count += len(keys)
        yield from skipped

    def finish_bundle(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        if self._count:
            seconds = time.perf_counter() - self._start
            log.info("bundle: %d images in %.1f s (%.0f images/s, %s)", self._count, seconds,
                     self._count / max(seconds, 1e-9), self._engine.name)


def build(pipeline, paths: list[str], keys_files: list[str], spec: WorkerSpec, skipped_prefix: str) -> None:
    """Add the extraction steps to a beam.Pipeline."""
    keyed = (pipeline | "paths" >> beam.Create(paths) | "spread paths" >> beam.Reshuffle()
             | "hash bytes" >> beam.Map(digest))
    cached = pipeline | "shards" >> beam.Create(keys_files) | "cached keys" >> beam.FlatMap(shard_keys)
    missing = ({"paths": keyed, "cached": cached} | "join" >> beam.CoGroupByKey()
               | "missing keys" >> beam.FlatMap(first_missing))
    (missing | "spread work" >> beam.Reshuffle()
     | "batch" >> beam.BatchElements(min_batch_size=spec.batch_size, max_batch_size=spec.batch_size)
     | "extract" >> beam.ParDo(ExtractFn(spec))
     | "report skipped" >> beam.io.WriteToText(skipped_prefix))


def pipeline_options(runner: str, workers: int | None, extra: list[str]):
    """Beam PipelineOptions for a runner name (direct|dataflow|flink|spark); extra flags come last and win."""
    from apache_beam.options.pipeline_options import PipelineOptions

    # Workers log retrain's lines (engine choice, bundle rates) and only warnings from Beam itself.
    flags = [f"--runner={RUNNERS[runner]}", "--default_sdk_harness_log_level=WARNING",
             '--sdk_harness_log_level_overrides={"retrain": "INFO"}']
    if runner == "direct":
        flags += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers or 2}"]
    elif workers and runner in WORKER_FLAGS:
        flags.append(f"{WORKER_FLAGS[runner]}={workers}")
    return PipelineOptions([*flags, *extra])


def extract(images: str | Path, cache_dir: str | Path, module: str, *, runner: str = "direct",
            workers: int | None = None, image_size: int | None = None, batch_size: int = 64,
            engine: str = "auto", max_pixels: int = 50_000_000, pipeline_args: list[str] = ()) -> dict:
    """Fill the cache namespace of module with the features of every image under images; returns counts.

    The result: listed, cached, duplicates, extracted, skipped (count), skipped_files ("path: reason"
    lines), entries (in the namespace afterwards), seconds (wall), busy_seconds (summed over workers in
    decode + engine + write), namespace (the folder). Raises RetrainError for bad input.
    """
    from retrain import modules, preprocess
    from retrain.train import image_size_for

    paths = list_images(images)
    info = modules.load_info(module)
    size = image_size_for(info.image_size, image_size, info.handle)
    cache = for_module(cache_dir, info.handle or info.path, info.fingerprint, size, preprocess.PREPROCESS_VERSION)
    spec = WorkerSpec(str(cache.folder), info.handle, info.path, info.fingerprint, size, batch_size, max_pixels, engine)
    report = storage.join(cache_dir, f".beam-run-{uuid.uuid4().hex[:12]}")  # skip lines; removed once read
    log.info("beam (%s): %s files, %s already in %s", runner, f"{len(paths):,}", f"{len(cache):,}", cache.folder)
    start = time.perf_counter()
    with beam.Pipeline(options=pipeline_options(runner, workers, list(pipeline_args))) as pipeline:
        build(pipeline, paths, [str(f) for f in cache.keys_files], spec, str(storage.join(report, "skipped")))
    counts = _counters(pipeline.result)
    skipped_files = _read_report(report)
    result = {"listed": len(paths), "cached": counts.get("cached", 0), "duplicates": counts.get("duplicates", 0),
              "extracted": counts.get("extracted", 0), "skipped": len(skipped_files), "skipped_files": skipped_files,
              "entries": len(FeatureCache(cache_dir, storage.name_of(cache.folder))),
              "seconds": time.perf_counter() - start, "busy_seconds": counts.get("busy_ms", 0) / 1000,
              "namespace": str(cache.folder)}
    _log_summary(result)
    return result


def _counters(result) -> dict[str, int]:
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def _read_report(folder) -> list[str]:
    """The skip lines the workers wrote, sorted; the report folder is removed afterwards."""
    lines = []
    for name in sorted(storage.listdir(folder)) if storage.exists(folder) else []:
        with storage.open_binary(storage.join(folder, name)) as f:
            lines += [line for line in f.read().decode("utf-8", "surrogateescape").splitlines() if line]
    storage.rmtree(folder)
    return sorted(lines)


def _log_summary(result: dict) -> None:
    log.info("beam: %s files, %s cached, %s duplicates, %s extracted, %s skipped in %.1f s; %s entries in %s",
             *(f"{result[k]:,}" for k in ("listed", "cached", "duplicates", "extracted", "skipped")),
             result["seconds"], f"{result['entries']:,}", result["namespace"])
    for line in result["skipped_files"]:
        log.warning("skipped %s", line)  # "skipped <path>: <reason>", as a local run says it
