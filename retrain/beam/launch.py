"""Feature extraction on Apache Beam: the same cache entries as a local run, from many workers at once.

The launcher lists the image files, resolves the module, opens the cache namespace and writes the
list where workers read it; retrain.beam.transforms's steps run on any Beam runner and fill the cache.
Files that do not decode are skipped and reported as "path: reason" lines. Locally it runs on the
DirectRunner with worker processes.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from retrain import fs
from retrain.beam.transforms import METRICS, build
from retrain.beam.worker import WorkerSpec
from retrain.errors import RetrainError, printable
from retrain.features.cache import FeatureCache, for_module
from retrain.inputs import scan

log = logging.getLogger(__name__)

RUNNERS = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner"}
# --workers maps to each runner's own option; Spark takes its parallelism from the cluster.
WORKER_FLAGS = {"direct": "--direct_num_workers", "dataflow": "--num_workers", "flink": "--parallelism"}
PATHS_PER_FILE = 100_000  # lines per path-list file: runners split the reading by file and offset


def list_images(images: str | Path, max_pixels: int) -> tuple[list[str], list[str]]:
    """(image files under a class-per-folder tree, sorted; "path: reason" lines of files left out).

    Local folders go through retrain.inputs.scan.scan (its layout rules and skip reasons, as a local run); a
    path with a scheme is walked with tf.io.gfile and every non-hidden file under a non-hidden folder
    is taken (bad ones are skipped when decoded)."""
    if not fs.is_remote(images):
        found = scan.scan(Path(images), max_pixels)
        return [str(e.path) for e in found.examples], [f"{Path(images) / rel}: {why}" for rel, why in found.skipped]
    import tensorflow as tf

    found = []
    for root, dirs, files in tf.io.gfile.walk(str(images)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not any(part.startswith(".") for part in root[len(str(images)):].split("/")):
            found += [f"{root.rstrip('/')}/{f}" for f in sorted(files) if not f.startswith(".")]
    if not found:
        raise RetrainError(f"--images: {images} holds no files; expected one sub-folder of images per class")
    return found, []


def write_paths(paths: list[str], folder) -> str:
    """Write the paths as JSON lines (any file name survives, newlines and undecodable bytes included)
    in files of PATHS_PER_FILE lines under folder; returns their glob pattern.

    A file list rather than beam.Create: Create embeds its data in the job, and a runner's job size
    limit (Dataflow's is 10 MB) would stop at about 100,000 paths.
    """
    fs.makedirs(folder)
    for number, start in enumerate(range(0, len(paths), PATHS_PER_FILE)):
        lines = "".join(json.dumps(p) + "\n" for p in paths[start:start + PATHS_PER_FILE])
        fs.publish(fs.join(folder, f"paths-{number:05d}.jsonl"), lines.encode("ascii"))
    return str(fs.join(folder, "paths-*.jsonl"))


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
            engine: str = "auto", max_pixels: int = 50_000_000, pipeline_args: Sequence[str] = ()) -> dict:
    """Fill the cache namespace of module with the features of every image under images; returns counts.

    The result: listed, cached, duplicates, extracted, skipped (count), skipped_files ("path: reason"
    lines), entries (in the namespace afterwards), seconds (wall), busy_seconds and cpu_seconds (wall and
    CPU time in decode + engine + write, summed over workers), namespace (the folder). Raises RetrainError
    for bad input.
    """
    from retrain.backbone import resolve
    from retrain.images import preprocess

    if not fs.is_remote(cache_dir):
        cache_dir = Path(cache_dir).resolve()  # workers may start elsewhere
    if not log.isEnabledFor(logging.DEBUG):  # Beam's own INFO lines, and the workers' echoed through it
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    paths, scan_skips = list_images(images, max_pixels)
    info = resolve.load_info(module)
    size = resolve.image_size_for(info, image_size)
    cache = for_module(cache_dir, info.handle or info.path, info.fingerprint, size, preprocess.PREPROCESS_VERSION)
    spec = WorkerSpec(str(cache.folder), info.handle, info.path, info.fingerprint, size, batch_size, max_pixels, engine)
    report = fs.join(cache_dir, f".beam-run-{uuid.uuid4().hex[:12]}")  # paths, skip lines; removed after
    log.info("beam (%s): %s files, %s already in %s", runner, f"{len(paths):,}", f"{len(cache):,}", cache.folder)
    start = time.perf_counter()
    try:
        with beam.Pipeline(options=pipeline_options(runner, workers, list(pipeline_args))) as pipeline:
            build(pipeline, write_paths(paths, report), [str(f) for f in cache.keys_files], spec,
                  str(fs.join(report, "skipped")))
        counts = _counters(pipeline.result)
        skipped_files = sorted(scan_skips + _read_report(report))
    finally:
        fs.rmtree(report)
    result = {"listed": len(paths), "cached": counts.get("cached", 0), "duplicates": counts.get("duplicates", 0),
              "extracted": counts.get("extracted", 0), "skipped": len(skipped_files), "skipped_files": skipped_files,
              "entries": len(FeatureCache(cache_dir, fs.name_of(cache.folder))),
              "seconds": time.perf_counter() - start, "busy_seconds": counts.get("busy_ms", 0) / 1000,
              "cpu_seconds": counts.get("cpu_ms", 0) / 1000,
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
    """The skip lines the workers wrote, sorted."""
    lines = []
    names = fs.listdir(folder) if fs.exists(folder) else []
    for name in sorted(n for n in names if n.startswith("skipped")):
        with fs.open_binary(fs.join(folder, name)) as f:
            lines += [json.loads(line) for line in f.read().decode("ascii").splitlines() if line]
    return sorted(lines)


def _log_summary(result: dict) -> None:
    log.info("beam: %s files, %s cached, %s duplicates, %s extracted, %s skipped in %.1f s; %s entries in %s",
             *(f"{result[k]:,}" for k in ("listed", "cached", "duplicates", "extracted", "skipped")),
             result["seconds"], f"{result['entries']:,}", result["namespace"])
    for line in result["skipped_files"]:
        log.warning("%s", printable(f"skipped {line}"))  # "skipped <path>: <reason>", as a local run says it
