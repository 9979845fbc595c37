"""The server's memory: request-sized buffers reused between requests, and handed back to the system
every TRIM_BYTES of request bodies, so the footprint neither pays page faults per request nor creeps.

A 12-MP photo's request holds ~20 MB at once (an 8 MB body, 6 MB of image bytes, TensorFlow's copy).
Mapped afresh for each request (glibc's M_MMAP_THRESHOLD at 1 MB), those buffers cost ~6 ms of page
faults per request: 14 ms of server CPU to receive and parse one, against 8 ms when they are reused.
Reused from a heap, freed buffers leave holes that the heap cannot shrink over: 8,000 photo requests
from 8 clients grew the server by 296 MB. malloc_trim hands those holes back (madvise), so trimming
every TRIM_BYTES costs the page faults of one request in ~30 and bounds the growth.
"""
from __future__ import annotations

import ctypes
import logging
import threading

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 64 << 20  # bytes: a larger allocation gets a mapping of its own, returned when freed
ARENAS = 2                 # glibc's default is 8 per core, one per AnyIO worker thread in practice
TRIM_BYTES = 256 << 20     # request body bytes between two trims (~30 photo requests)

_libc = None
_lock = threading.Lock()
_since_trim = 0


def reuse_request_buffers() -> None:
    """Have glibc keep request-sized buffers in ARENAS shared arenas rather than mapping each afresh
    (its defaults: a threshold raised on the fly to 32 MB, many arenas). Not glibc: its policy stands."""
    global _libc
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (fixed: no longer raised after large frees)
        libc.mallopt(-8, ARENAS)  # M_ARENA_MAX
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        _libc = libc
    except (OSError, AttributeError):
        log.debug("mallopt unavailable; the allocator's defaults stand")


def request_done(body_bytes: int) -> None:
    """Count a finished request's body; every TRIM_BYTES, give the heaps' free pages back to the system."""
    global _since_trim
    if _libc is None:
        return
    with _lock:
        _since_trim += body_bytes
        if _since_trim < TRIM_BYTES:
            return
        _since_trim = 0
    _libc.malloc_trim(0)
