"""The `retrain serve` process: find the base path, load the newest version, bind, announce, serve.

uvicorn runs the app on one event loop; model calls run on each signature's batcher thread and JSON
work on Starlette's thread pool, so a slow request never holds up the others. uvicorn catches Ctrl-C
and SIGTERM itself, finishes the requests in flight, and passes the signal on when it returns.
"""
from __future__ import annotations

import ctypes
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from retrain import fs
from retrain.errors import RetrainError
from retrain.serve.rest import RestError

log = logging.getLogger(__name__)

GRACE_SECONDS = 5  # requests in flight at Ctrl-C get this long to finish
ARENAS = 2  # glibc malloc arenas: freed request buffers wait in at most two heaps for the next request
MMAP_THRESHOLD = 64 << 20  # bytes: below this a buffer comes from an arena, not a mapping of its own


def _reuse_request_buffers() -> None:
    """Have glibc serve a request's buffers (a 12-MP photo's request: an 8 MB body, 6 MB of decoded bytes)
    from two arenas instead of mapping each afresh. Fresh mappings cost ~6 ms of page faults per photo
    request: photos were served at 76 % of the in-process rate that way, at 81-86 % with reuse. Each
    request's objects are freed when it ends (app.REQUEST_THREADS, raw_b64._restore), so the arenas stay
    the same size: +8 and +11 MB over 16,000 requests (docs/benchmarks.md)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its own policy stands
        log.debug("glibc not found; the allocator's defaults stand")
        return
    libc.mallopt(-8, ARENAS)  # M_ARENA_MAX
    libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (also stops glibc moving it by itself)


def find_base(model: Path) -> Path:
    """The base path to serve: MODEL itself, or MODEL/saved_model for a run's output folder."""
    model = Path(model)
    if not model.is_dir():
        raise RetrainError(f"MODEL_BASE: found no folder {model}, expected a saved_model/ base path")
    if (model / "saved_model.pb").is_file():
        raise RetrainError(f"MODEL_BASE: found a single version folder {model}, expected its parent, the base "
                           "path holding numbered versions")
    if not fs.numbered(model) and (model / "saved_model").is_dir():
        return model / "saved_model"
    return model


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(base: Path, *, name: str, host: str, port: int, limits, on_ready: Callable) -> None:
    """Serve the base path (find_base's answer) until Ctrl-C or SIGTERM; on_ready(url, store) is called once
    the port is bound and the newest version is loaded (port 0 picks a free port: the URL names it)."""
    import uvicorn

    from retrain.serve.app import create_app
    from retrain.serve.store import Store

    try:  # first: a busy port is known before seconds go into loading a model
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        raise RetrainError(f"--port: cannot listen on {host}:{port} ({error.strerror or error}); "
                           "expected a free port (--port 0 picks one)") from None
    _reuse_request_buffers()
    store = Store(base, name)
    try:
        store.get(name)
    except RestError:
        log.warning("no complete version under %s yet; serving it as soon as one appears", base)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start-up lines repeat ours
    config = uvicorn.Config(create_app(store, limits), log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=GRACE_SECONDS)
    on_ready(url_of(host, sock.getsockname()[1]), store)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        store.close()
