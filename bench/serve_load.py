"""Load on `retrain serve`: concurrent clients against the signature called in-process, and server memory.

For each image kind (one 224-pixel JPEG; one 12-MP photo: a textured, noisy 4032x3024 JPEG at quality
90), all in this one run:
  in-process  the SavedModel's serving_default called with [image] from --clients threads at once
              (--baseline-requests calls each): the reference throughput
  served      `python -m retrain serve` in a child process; --clients threads, each with its own
              keep-alive connection, POST {"instances": [{"b64": ...}]} to :predict, --requests each
              (--photo-requests for the photo): errors, p50/p99 latency, throughput
Both kinds get a warm-up round of --warmup requests per client first; the server's RSS (its whole
process tree, from /proc) is read after the warm-ups and at the end. Prints one JSON line per round
and a markdown table. Needs the `serve` extra. Usage:
    python -m retrain --images data/fashion --output /tmp/fashion-run
    python bench/serve_load.py /tmp/fashion-run [--clients 8] [--requests 1000] [--photo-requests 1000]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "helpers")]

from serve_client import Client, Server, b64  # noqa: E402


def jpeg(width: int, height: int, seed: int) -> bytes:
    """A textured, noisy photo-like JPEG at quality 90 (smooth shapes plus sensor-like noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([128 + 90 * np.sin(x / (37 + 11 * c) + y / (53 - 7 * c)) * np.cos(y / (29 + 5 * c))
                     for c in range(3)], -1)
    noise = rng.normal(0, 18, (height, width, 3)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def concurrently(clients: int, per_client: int, work) -> tuple[float, list[float], int]:
    """(wall s, every call's latency in s, errors) of `clients` threads each calling work(client_index)
    per_client times."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def run(index: int) -> None:
        barrier.wait()
        for _ in range(per_client):
            start = time.perf_counter()
            ok = work(index)
            latencies[index].append(time.perf_counter() - start)
            errors[index] += not ok
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, [t for part in latencies for t in part], sum(errors)


def summary(kind: str, where: str, wall: float, latencies: list[float], errors: int) -> dict:
    ordered = sorted(latencies)
    return {"kind": kind, "where": where, "requests": len(latencies), "errors": errors,
            "per_s": round(len(latencies) / wall, 1), "p50_ms": round(1e3 * statistics.median(ordered), 1),
            "p99_ms": round(1e3 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "wall_s": round(wall, 1), "load": round(os.getloadavg()[0], 2)}


def in_process(version_dir: Path, images: dict[str, bytes], clients: int, requests: dict[str, int]) -> list[dict]:
    import tensorflow as tf

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    rows = []
    for kind, image in images.items():
        tensor = tf.constant([image])
        serve(image_bytes=tensor)  # the first call of a loaded signature is slow

        def call(_index: int, tensor=tensor) -> bool:
            return serve(image_bytes=tensor)["scores"].shape == (1, serve.structured_outputs["scores"].shape[1])
        concurrently(clients, 3, call)
        rows.append(summary(kind, "in-process", *concurrently(clients, requests[kind], call)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a run's output folder or its saved_model/ base path")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1000, help="per client, 224-pixel JPEG")
    parser.add_argument("--photo-requests", type=int, default=1000, help="per client, 12-MP photo")
    parser.add_argument("--baseline-requests", type=int, default=200, help="per thread, in-process, 224-pixel JPEG")
    parser.add_argument("--photo-baseline-requests", type=int, default=50, help="per thread, in-process, photo")
    parser.add_argument("--warmup", type=int, default=20, help="per client and kind, before memory is read")
    parser.add_argument("--log", type=Path, default=Path("/tmp/serve_load.log"), help="the server's stderr")
    args = parser.parse_args()

    base = args.model / "saved_model" if (args.model / "saved_model").is_dir() else args.model
    version_dir = max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    images = {"224-px JPEG": jpeg(224, 224, 1), "12-MP photo": jpeg(4032, 3024, 2)}
    counts = {"224-px JPEG": args.requests, "12-MP photo": args.photo_requests}
    print(json.dumps({kind: f"{len(data) / 1e6:.2f} MB" for kind, data in images.items()}), flush=True)

    rows = in_process(version_dir, images, args.clients,
                      {"224-px JPEG": args.baseline_requests, "12-MP photo": args.photo_baseline_requests})
    server = Server(args.model, "--max-body-mb", "64", log_path=args.log)
    try:
        bodies = {kind: json.dumps({"instances": [b64(data)]}).encode() for kind, data in images.items()}
        connections = [Client(server.url) for _ in range(args.clients)]
        for body in bodies.values():  # warm-up: both kinds, so the photo's buffers exist before the first read
            concurrently(args.clients, args.warmup, lambda i, body=body: connections[i].predict(body)[0] == 200)
        memory_start = tree_rss_mb(server.process.pid)
        for kind, body in bodies.items():
            result = summary(kind, "served", *concurrently(
                args.clients, counts[kind], lambda i, body=body: connections[i].predict(body)[0] == 200))
            result["server_rss_mb"] = round(tree_rss_mb(server.process.pid), 1)
            rows.append(result)
            print(json.dumps(rows[-1]), flush=True)
        memory_end = tree_rss_mb(server.process.pid)
        for connection in connections:
            connection.close()
    finally:
        server.stop()
    print(f"\nserver RSS after warm-up {memory_start:.0f} MB, at the end {memory_end:.0f} MB: "
          f"grew {memory_end - memory_start:+.1f} MB\n")
    print("| images | where | requests | errors | per s | p50 ms | p99 ms | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['kind']} | {row['where']} | {row['requests']} | {row['errors']} | {row['per_s']} | "
              f"{row['p50_ms']} | {row['p99_ms']} | {row['load']} |")
    for kind in images:
        served = next(r for r in rows if r["kind"] == kind and r["where"] == "served")
        local = next(r for r in rows if r["kind"] == kind and r["where"] == "in-process")
        print(f"{kind}: served throughput {100 * served['per_s'] / local['per_s']:.0f} % of in-process")


if __name__ == "__main__":
    main()
