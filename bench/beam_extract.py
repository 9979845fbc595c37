"""Beam DirectRunner extraction against the local engine, and a local run on the cache Beam filled.

Steps, each in its own child process (os.wait4 gives its wall time, CPU time and peak RSS):
  local   retrain.features.extraction.extract on a sample (--sample images, no cache): the local engine's
          images/s on this machine now, and the reference features
  beam    python -m retrain extract --runner direct --workers N into a fresh cache (all the images)
  warm    python -m retrain --images IMAGES --cache-dir SAME: must extract 0 and add no file to the cache
then the largest difference between the sample's cached and local features, and a markdown table.
Needs the `beam` extra. Usage:
    python bench/fashion_mnist.py --split train --out /tmp/fmnist-60k
    python bench/beam_extract.py --images /tmp/fmnist-60k --work /tmp/beam-bench [--workers 2] [--sample 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODULE = "efficientnet_lite0"
MAX_PIXELS = 50_000_000


def measure(name: str, argv: list[str], work: Path) -> dict:
    """Run argv; wall s, CPU s (its reaped children included), peak RSS MB, load, and its last JSON line."""
    log = work / f"{name}.log"
    with open(log, "w") as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, text=True)
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result.update(step=name, wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024,
                  load=os.getloadavg()[0], log=str(log), stdout=stdout)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed (exit {os.waitstatus_to_exitcode(status)}), see {log}")
    print(f"{name}: {wall:.1f} s, CPU {result['cpu']:.1f} s, load {result['load']:.1f}", file=sys.stderr, flush=True)
    return result


def child_local(images: str, sample: str, out: str) -> None:
    """Local engine (auto) on `sample` images spread over the sorted list, no cache; features to out."""
    from retrain.backbone.resolve import load_info
    from retrain.features.extraction import Extractor, extract
    from retrain.inputs import scan

    paths = sorted(e.path for e in scan.scan(Path(images), MAX_PIXELS).examples)
    paths = paths[:: max(1, len(paths) // int(sample))][: int(sample)]  # spread over every class
    module = load_info(MODULE)
    extractor = Extractor(module=module, image_size=224, engine="auto", cache_dir=None, batch_size=64,
                          max_pixels=MAX_PIXELS, workdir=Path(out).parent)
    extract(extractor, paths[:64])  # conversion and warm-up, not timed
    start, cpu = time.perf_counter(), time.process_time()
    result = extract(extractor, paths)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(out, result.matrix.read(np.arange(len(paths))))
    print(json.dumps({"images": len(paths), "seconds": seconds, "cpu_seconds": cpu, "paths": [str(p) for p in paths]}))


def child_beam(images: str, cache: str, workers: str) -> None:
    from retrain.beam import launch as beam

    result = beam.extract(images, cache, MODULE, runner="direct", workers=int(workers), batch_size=64)
    print(json.dumps({k: v for k, v in result.items() if k != "skipped_files"}))


def cache_files(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in cache.rglob("*")}


def compare(cache: Path, sample_paths: list[str], local_file: Path) -> float:
    """Largest |cached - local| over the sample."""
    from retrain.backbone.resolve import load_info
    from retrain.features.cache import for_module
    from retrain.features.extraction import file_digest
    from retrain.images import preprocess

    module = load_info(MODULE)
    features = for_module(cache, module.handle or module.path, module.fingerprint, 224, preprocess.PREPROCESS_VERSION)
    local = np.load(local_file)
    cached = np.full_like(local, np.nan)
    for rows, rows_features in features.read([file_digest(Path(p)) for p in sample_paths], range(len(sample_paths))):
        cached[rows] = rows_features
    return float(np.abs(cached - local).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=1000, help="images for the local engine and the comparison")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the warm local run")
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cache = work / "cache"
    me = [sys.executable, str(Path(__file__).resolve())]
    local = measure("local", [*me, "--child=local", args.images, str(args.sample), str(work / "local.npy")], work)
    beam = measure("beam", [*me, "--child=beam", args.images, str(cache), str(args.workers)], work)
    before = cache_files(cache)
    warm = measure("warm", [sys.executable, "-m", "retrain", "--images", args.images, "--cache-dir", str(cache),
                            "--output", str(work / "run"), "--epochs", str(args.epochs)], work)
    said = re.search(r"features: ([\d,]+) cached, ([\d,]+) to extract", Path(warm["log"]).read_text())
    new_files = sorted(cache_files(cache) - before)
    diff = compare(cache, local["paths"], work / "local.npy")
    local_rate = local["images"] / local["seconds"]
    cores = os.cpu_count()
    per_worker = beam["extracted"] / beam["busy_seconds"]
    print(f"\nmachine: {cores} cores, load after each step shown; module {MODULE} 224x224, batch 64\n")
    # CPU ms per image (decode + engine, all threads, start-up excluded) is steadier than wall time when
    # others share the cores, and 1000 / it is what one fully used core would do. CPU s is the whole child.
    print("| step | images | wall s | CPU s | CPU ms/image | images/s | per worker or core | load after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| local engine (sample, no cache) | {local['images']:,} | {local['seconds']:.1f} | {local['cpu']:.0f} | "
          f"{1000 * local['cpu_seconds'] / local['images']:.1f} | {local_rate:.0f} | "
          f"{local_rate / cores:.0f} per core | {local['load']:.1f} |")
    print(f"| Beam DirectRunner, {args.workers} workers | {beam['extracted']:,} | {beam['wall']:.1f} | "
          f"{beam['cpu']:.0f} | {1000 * beam['cpu_seconds'] / max(beam['extracted'], 1):.1f} | "
          f"{beam['extracted'] / beam['wall']:.0f} | {per_worker:.0f} per worker busy, "
          f"{beam['extracted'] / beam['wall'] / args.workers:.0f} per worker wall | {beam['load']:.1f} |")
    print(f"| local run on Beam's cache | {said.group(1) if said else '?'} cached | {warm['wall']:.1f} | "
          f"{warm['cpu']:.0f} | | | | {warm['load']:.1f} |")
    print(f"\nBeam: {beam['listed']:,} files, {beam['cached']:,} cached, {beam['duplicates']:,} duplicates, "
          f"{beam['extracted']:,} extracted, {beam['skipped']} skipped; {beam['entries']:,} cache entries")
    print(f"local run afterwards: {said.group(2) if said else '?'} extracted, {len(new_files)} new files in the cache"
          + (f" ({', '.join(new_files[:5])})" if new_files else ""))
    print(f"max |Beam - local| over {local['images']:,} sample features: {diff:.2e}")
    print(f"Beam per worker (busy) / local per core: {per_worker / (local_rate / cores):.2f}; CPU per image, "
          f"local / Beam: {(local['cpu_seconds'] / local['images']) / (beam['cpu_seconds'] / beam['extracted']):.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("--child="):
        {"local": child_local, "beam": child_beam}[sys.argv[1][len("--child="):]](*sys.argv[2:])
    else:
        main()
