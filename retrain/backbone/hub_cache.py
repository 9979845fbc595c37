"""TF-Hub and Kaggle handles: where tensorflow_hub caches them, and a download that fails fast offline.

A handle works offline once its download sits in TF-Hub's cache ($TFHUB_CACHE_DIR/<sha1 of the handle>);
without network, a name lookup or a connection behind a firewall that drops packets can hang, so a
bounded probe runs before tensorflow_hub is asked to download anything.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from retrain.errors import RetrainError, reason

log = logging.getLogger(__name__)

# Seconds to wait for a TCP connection before declaring a download impossible.
CONNECT_TIMEOUT_S = 5.0
# Kaggle Models handle: owner/model/framework/variation/version.
_KAGGLE_HANDLE = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+/[\w.-]+/\d+$")


def cache_dir() -> Path:
    """TF-Hub's download cache: $TFHUB_CACHE_DIR, else <temp>/tfhub_modules (tensorflow_hub's default)."""
    return Path(os.environ.get("TFHUB_CACHE_DIR") or Path(tempfile.gettempdir()) / "tfhub_modules")


def cached_dir(url: str) -> Path:
    """Where tensorflow_hub keeps (or would keep) the download of `url`: <cache>/<sha1 of the handle>."""
    return cache_dir() / hashlib.sha1(url.encode("utf8")).hexdigest()


def is_cached(url: str) -> bool:
    folder = cached_dir(url)
    return folder.is_dir() and any(folder.iterdir())


def as_url(handle: str) -> str | None:
    """An http(s) URL as given; a Kaggle Models handle as its kaggle.com URL; anything else None."""
    if re.match(r"^https?://", handle, re.IGNORECASE):
        return handle
    if _KAGGLE_HANDLE.match(handle):
        return "https://www.kaggle.com/models/" + handle
    return None


def _offline_error(handle: str, why: str) -> RetrainError:
    return RetrainError(
        f"--module: cannot download {handle} ({why}); expected a copy in the TF-Hub cache "
        f"(set TFHUB_CACHE_DIR to a folder holding it, now {cache_dir()}) or a local SavedModel path")


def _address(url: str) -> tuple[str, int]:
    """(host, port) a download of url connects to first: the configured proxy's, else the URL's."""
    target = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(target.hostname or ""):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    return target.hostname or "", target.port or (443 if target.scheme == "https" else 80)


def check_reachable(url: str, handle: str) -> None:
    """Raise RetrainError within about CONNECT_TIMEOUT_S when neither the host nor the proxy answers.

    The probe runs in a daemon thread because a name lookup has no timeout of its own.
    """
    address = _address(url)
    outcome: list[OSError | None] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=CONNECT_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=probe, name="retrain-network-probe", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 1.0)
    if not outcome:
        raise _offline_error(handle, f"no answer from {address[0]} within {CONNECT_TIMEOUT_S:g} s")
    if outcome[0] is not None:
        raise _offline_error(handle, f"no connection to {address[0]}: {outcome[0]}")


def download(handle: str, url: str) -> str:
    """The local folder (or, with TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED, the remote path) of a handle,
    downloading it into the TF-Hub cache on first use."""
    if not is_cached(url):
        check_reachable(url, handle)
        log.info("downloading %s into the TF-Hub cache %s", handle, cache_dir())
    import tensorflow as tf  # deferred: importing TensorFlow takes seconds
    import tensorflow_hub

    try:
        return tensorflow_hub.resolve(url)
    except (OSError, ValueError, tarfile.TarError, tf.errors.OpError) as exc:  # urllib's errors are OSErrors
        raise _offline_error(handle, f"{type(exc).__name__}: {reason(exc)}") from None
