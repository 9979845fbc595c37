"""Ctrl-C and SIGTERM: asked for by a signal, honoured at the next safe point.

A Python exception raised straight from a signal handler can land inside TensorFlow's or LiteRT's
native code, which turns it into an error of its own (a LiteRT "initialization failed", a decode
error that would skip a good image). So once install() has run, the first signal only sets a flag,
and the long loops call check() between batches, epochs and stages, where raising is safe; a second
signal raises at once, for the impatient; inside immediate() (the scan) the first one does. Without
install() (the Python API) nothing changes.
"""
from __future__ import annotations

import contextlib
import signal

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # what shells report for a process ended by the signal
_asked: list[int] = []
_at_once: list[bool] = []  # non-empty inside immediate(): the first signal raises


class Stopped(BaseException):
    """The run stopped on a signal; `exit_code` is 130 (SIGINT) or 143 (SIGTERM). A BaseException, so
    no `except Exception` swallows it, while every `finally` and staged write cleans up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = EXIT_CODES[signum]


def _handler(signum, frame) -> None:
    if _asked or _at_once:
        raise Stopped(signum)
    _asked.append(signum)


@contextlib.contextmanager
def immediate():
    """Inside, the first signal raises Stopped at once: for plain-Python stages such as the scan, where no
    native code can be interrupted and nothing is half-written."""
    check()
    _at_once.append(True)
    try:
        yield
    finally:
        _at_once.pop()


def install() -> None:
    """Route SIGINT and SIGTERM to the flag (call from the main thread, once per command)."""
    _asked.clear()
    for signum in EXIT_CODES:
        signal.signal(signum, _handler)


def check() -> None:
    """Raise Stopped if a signal asked the run to stop."""
    if _asked:
        raise Stopped(_asked[0])
