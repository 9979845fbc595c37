"""TensorFlow's and LiteRT's native start-up lines: kept off the terminal unless asked for.

Importing TensorFlow 2.21 prints absl/oneDNN/CUDA lines ("All log messages before
absl::InitializeLog()...", "oneDNN custom operations are on", "Could not find cuda drivers") from C++
before Python logging exists, twice, and TF_CPP_MIN_LOG_LEVEL does not reach them; creating a LiteRT
interpreter prints "Created TensorFlow Lite XNNPACK delegate". Only redirecting file descriptor 2
while those native calls run silences them (docs/tensorflow-noise.md has what was tried).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys

_show = False


def show(flag: bool) -> None:
    """Let native log lines and TensorFlow's Python-side INFO lines through (the CLI's -v), or keep
    them off stderr (default)."""
    global _show
    _show = flag
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.INFO if flag else logging.ERROR)


@contextlib.contextmanager
def quiet():
    """Send what native code writes to fd 2 to /dev/null for the block's duration.

    Python exceptions are unaffected (they are printed after the block); a native crash message
    inside the block is lost, which is why -v turns this off.
    """
    if _show:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow():
    """Import TensorFlow and enumerate its devices (which prints the CUDA probe) quietly; returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the Python-side and later C++ INFO/WARNING lines
    with quiet():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
