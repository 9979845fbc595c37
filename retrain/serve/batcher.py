"""Concurrent requests to one signature, gathered into one call (TF Serving's --enable_batching, simplified).

A request's inputs are batch-major arrays; while one call runs, the requests that arrive queue up, and
the next call takes all of them (up to `max_batch` rows, and no more once they hold `max_bytes` of
input: photos go one per call, so every core decodes one) joined along dimension 0, then hands each
request its own rows of every output. No timer waits for a batch to fill: an idle server answers a
lone request at once, a busy one batches by itself. A joined call that fails (one request's image is
refused by the graph) is retried request by request, so only the bad request gets the error.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

MAX_BATCH = 32  # rows per joined call: bounds the memory one call holds
# Encoded bytes after which a call takes no more requests. One call decodes its images one after another
# (~35 ms of one core for a 12-MP JPEG), so photos go one per call and each core gets one: joining 8 photos
# into one call left the other core idle (63 % of in-process throughput, against 8 threads calling it).
MAX_BYTES = 1 << 20
WORKERS = max(2, os.cpu_count() or 1)  # calls in flight per signature: one per core

Arrays = dict[str, np.ndarray]


class Batcher:
    """Runs `function(arrays) -> arrays` on `workers` threads, each joining the requests queued when it is free.

    submit() may be called from any thread and returns a Future of that request's outputs (or the
    exception its own call raised). Outputs must be batch-major, as the serving contract requires;
    a function whose outputs are not is called once per request.
    """

    def __init__(self, function: Callable[[Arrays], Arrays], max_batch: int = MAX_BATCH, name: str = "batcher",
                 workers: int = WORKERS, max_bytes: int = MAX_BYTES):
        self._function, self._max_batch, self._max_bytes = function, max_batch, max_bytes
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, arrays: Arrays) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._closed:  # its version was unloaded after the request found it: answer it here
            self._run([(arrays, future)])
        else:
            self._queue.put((arrays, future))
        return future

    def close(self) -> None:
        """Finish the queued requests, then stop the worker."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)  # one stop per worker, after everything queued so far
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, rows, size, stop = [first], _rows(first[0]), _bytes(first[0]), False
            while rows < self._max_batch and size < self._max_bytes:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
                rows += _rows(item[0])
                size += _bytes(item[0])
            self._run(items)
            if stop:
                return
            first = item = items = None  # an idle worker holds on to no request's arrays

    def _run(self, items: list) -> None:
        items = [(arrays, future) for arrays, future in items if future.set_running_or_notify_cancel()]
        if len(items) > 1:
            try:
                joined = {name: np.concatenate([arrays[name] for arrays, _ in items]) for name in items[0][0]}
            except (ValueError, KeyError):  # different inner shapes or inputs: not joinable
                joined = None
            if joined is not None:
                try:
                    outputs = self._function(joined)
                except Exception:  # noqa: BLE001 (some request is bad: find out which, one by one)
                    outputs = None
                if outputs is not None and _split(outputs, items):
                    log.debug("one call for %d requests (%d rows)", len(items), sum(_rows(a) for a, _ in items))
                    return
        for arrays, future in items:
            try:
                future.set_result(self._function(arrays))
            except Exception as error:  # noqa: BLE001 (the request's own error travels back to it)
                future.set_exception(error)


def _rows(arrays: Arrays) -> int:
    return max((len(a) if a.ndim else 1) for a in arrays.values()) if arrays else 1


def _bytes(arrays: Arrays) -> int:
    """The request's input bytes: an encoded image counts its length."""
    return sum(sum(len(v) for v in a.ravel() if isinstance(v, bytes)) if a.dtype == object else a.nbytes
               for a in arrays.values())


def _split(outputs: Arrays, items: list) -> bool:
    """Hand each request its rows of every output; False (nothing handed) when an output is not batch-major."""
    total = sum(_rows(arrays) for arrays, _ in items)
    if any(a.ndim == 0 or len(a) != total for a in outputs.values()):
        return False
    start = 0
    for arrays, future in items:
        end = start + _rows(arrays)
        future.set_result({name: a[start:end] for name, a in outputs.items()})
        start = end
    return True
