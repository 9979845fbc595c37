"""RSS of `retrain serve` sampled every 5 s while 8 clients send 12-MP photos (does it level off?).

    python bench/serve_memory.py /tmp/fashion-run [--clients 8] [--requests 80]
Prints errors, requests, the idle RSS at the end and the (seconds, MB) samples. Needs the `serve` extra.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests" / "helpers")]

from serve_load import concurrently, jpeg, tree_rss_mb  # noqa: E402

from serve_client import Client, Server, b64  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=80, help="per client")
    args = parser.parse_args()
    body = json.dumps({"instances": [b64(jpeg(4032, 3024, 2))]}).encode()
    server = Server(args.model, log_path=Path("/tmp/serve_memory.log"))
    connections = [Client(server.url) for _ in range(args.clients)]
    samples, done = [], threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not done.wait(5):
            samples.append((round(time.perf_counter() - start), round(tree_rss_mb(server.process.pid))))
    threading.Thread(target=sample, daemon=True).start()
    try:
        _, latencies, errors = concurrently(args.clients, args.requests,
                                            lambda i: connections[i].predict(body)[0] == 200)
        done.set()
        print("errors", errors, "requests", len(latencies), "idle RSS at end", round(tree_rss_mb(server.process.pid)))
        print(samples)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
