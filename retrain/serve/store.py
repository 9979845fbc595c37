"""The versions of one model base path, as TF Serving's file-system source sees them, loaded on demand.

A version is a child folder whose name is a plain decimal integer holding saved_model.pb and
variables/variables.index. Everything else is ignored: retrain stages a version in a hidden .tmp-
folder and renames it into place, so a half-written version never has a numeric name; a numeric
folder still missing its variables (another writer copying it in) is skipped until it is complete.
The base path is listed again on every lookup (a directory listing: microseconds), so a version
written while serving answers the very next request, and a deleted one stops being served.
The newest version is the default; any other is loaded when first asked for; at most MAX_LOADED
stay loaded. Requests never name a file: a version is an integer looked up in the listing.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from retrain import fs
from retrain.serve.batcher import Batcher
from retrain.serve.rest import RestError

log = logging.getLogger(__name__)

MAX_LOADED = 3  # the newest version plus two others asked for by number (each holds its weights in memory)
DEFAULT_SIGNATURE = "serving_default"
WARMUP = Path("assets.extra") / "tf_serving_warmup_requests"


def complete(folder: Path) -> bool:
    """Whether a version folder holds everything a load needs."""
    return (folder / "saved_model.pb").is_file() and (folder / "variables" / "variables.index").is_file()


def _stamp(folder: Path) -> tuple:
    """Changes when the files a load reads change (a failed version is tried again once rewritten)."""
    return tuple(os.stat(folder / name).st_mtime_ns for name in ("saved_model.pb", "variables/variables.index"))


@dataclasses.dataclass
class Version:
    """One loaded version: its number, folder, SignatureDefs (as saved_model.pb has them) and a batcher
    per signature."""

    number: int
    path: Path
    signature_defs: dict
    loaded: object
    batchers: dict = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def input_specs(self, signature: str) -> dict[str, str]:
        """Input name -> DataType name ("DT_STRING") of a signature (KeyError if it has none)."""
        inputs = self.signature_defs[signature].inputs
        return {name: types_pb2.DataType.Name(info.dtype) for name, info in inputs.items()}

    def call(self, signature: str, arrays: dict[str, np.ndarray]) -> concurrent.futures.Future:
        """A Future of the signature's outputs (numpy arrays) for these batch-major inputs; concurrent
        calls are joined into one (batcher.py)."""
        with self.lock:
            batcher = self.batchers.get(signature)
            if batcher is None:
                batcher = self.batchers[signature] = Batcher(self._runner(signature),
                                                             name=f"v{self.number}-{signature}")
        return batcher.submit(arrays)

    def _runner(self, signature: str):
        function = self.loaded.signatures[signature]
        specs = function.structured_input_signature[1]

        def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            tensors = {name: tf.constant(value, dtype=specs[name].dtype) for name, value in arrays.items()}
            return {name: value.numpy() for name, value in function(**tensors).items()}
        return run

    def close(self) -> None:
        with self.lock:
            batchers, self.batchers = list(self.batchers.values()), {}
        for batcher in batchers:
            batcher.close()


class Store:
    """The versions under `base`, served as model `name`."""

    def __init__(self, base: Path, name: str, max_loaded: int = MAX_LOADED):
        self.base, self.name, self.max_loaded = Path(base), name, max_loaded
        self._loaded: OrderedDict[int, Version] = OrderedDict()  # least recently used first
        self._failed: dict[int, tuple] = {}  # version -> the stamp its load failed at
        self._lock = threading.Lock()

    def on_disk(self) -> dict[int, Path]:
        """Complete versions under the base path, by number."""
        return {n: p for n, p in fs.numbered(self.base).items() if complete(p)}

    def versions(self, number: int | None = None) -> list[int]:
        """The versions a status request reports: all complete ones newest first, or the one asked for."""
        disk = self.on_disk()
        if number is None:
            if not disk:
                raise RestError(f"Could not find any versions of model {self.name}", 404)
            return sorted(disk, reverse=True)
        if number not in disk:
            raise RestError(f"Could not find version {number} of model {self.name}", 404)
        return [number]

    def get(self, name: str, number: int | None = None) -> Version:
        """The loaded version `number` of model `name` (None: the newest that loads), loading it if needed.
        Raises RestError 404 as TF Serving does for an unknown model or version."""
        request = f"Latest({name})" if number is None else f"Specific({name}, {number})"
        if name != self.name:
            raise RestError(f"Servable not found for request: {request}", 404)
        with self._lock:
            disk = self.on_disk()
            for gone in [n for n in self._loaded if n not in disk]:
                log.info("version %d left %s: unloaded", gone, self.base)
                self._loaded.pop(gone).close()
            candidates = sorted(disk, reverse=True) if number is None else [number] if number in disk else []
            for candidate in candidates:
                version = self._loaded.get(candidate) or self._load(candidate, disk[candidate])
                if version is not None:
                    self._loaded.move_to_end(candidate)
                    return version
        raise RestError(f"Servable not found for request: {request}", 404)

    def _load(self, number: int, path: Path) -> Version | None:
        """Load a version (None if it fails; it is tried again once its files change)."""
        try:
            stamp = _stamp(path)
        except OSError:  # deleted in between
            return None
        if self._failed.get(number) == stamp:
            return None
        log.info("loading version %d of %s from %s", number, self.name, path)
        try:
            proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
            version = Version(number, path, dict(proto.meta_graphs[0].signature_def), tf.saved_model.load(str(path)))
            _warm_up(version)
        except Exception as error:  # noqa: BLE001 (a bad version is skipped, as TF Serving skips it)
            log.error("version %d of %s failed to load, not served: %s", number, self.name,
                      str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
            self._failed[number] = stamp
            return None
        self._failed.pop(number, None)
        self._loaded[number] = version
        while len(self._loaded) > self.max_loaded:
            oldest, evicted = self._loaded.popitem(last=False)
            log.info("version %d of %s unloaded (%d versions stay loaded)", oldest, self.name, self.max_loaded)
            evicted.close()
        return version

    def close(self) -> None:
        with self._lock:
            for version in self._loaded.values():
                version.close()
            self._loaded.clear()


def _warm_up(version: Version) -> None:
    """Replay the version's warmup requests, as TF Serving does before serving it (first calls are slow)."""
    path = version.path / WARMUP
    if not path.is_file():
        return
    from tensorflow_serving.apis import prediction_log_pb2

    for record in tf.data.TFRecordDataset(str(path)):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature in version.loaded.signatures:
            inputs = {key: tf.constant(tf.make_ndarray(value)) for key, value in request.inputs.items()}
            version.loaded.signatures[signature](**inputs)
