"""What a Beam worker runs, without Beam: the module on this machine, its engine, and batch decoding.

Kept apart from retrain.beam so it can be used and tested without Apache Beam installed.
"""
from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np

from retrain import storage
from retrain.errors import RetrainError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Plain values the launcher resolved, pickled to every worker."""
    cache_folder: str   # the namespace folder the shards go to (local path or URL)
    handle: str         # module name or handle as given; re-resolved on a worker that lacks module_path
    module_path: str    # the SavedModel folder on the launcher's machine (or a URL every worker reads)
    fingerprint: str    # the module's weights; a worker that resolves other weights refuses to run
    image_size: int     # square input side in pixels
    batch_size: int     # images per engine call
    max_pixels: int     # largest width x height decoded
    engine: str         # auto | litert | tf, as retrain.engines.open_engine takes it


def worker_module(spec: WorkerSpec):
    """The module as a retrain.modules.ModuleInfo on this worker, its weights checked by fingerprint.

    On the launcher's machine (DirectRunner) module_path exists; a remote worker resolves the handle
    itself (building the bundled module, or reading the TF-Hub cache), and must get the same weights,
    or its features would land in a namespace that names other weights.
    """
    from retrain import modules

    path = spec.module_path
    if not storage.exists(path):
        path = modules.resolve(spec.handle)
        found = modules.fingerprint(path)
        if found != spec.fingerprint:
            raise RetrainError(f"--module {spec.handle}: this worker resolved {path} with fingerprint {found}, "
                               f"expected {spec.fingerprint} as on the launcher; install the same module version")
    return modules.ModuleInfo(spec.handle, path, spec.image_size, None, spec.fingerprint)


def open_worker_engine(spec: WorkerSpec):
    """(engine, decoder): retrain.engines.open_engine's choice for this machine, and a traced
    retrain.preprocess.decode_batch (string [n] -> float32 [n, S, S, 3])."""
    import tensorflow as tf

    from retrain import engines, preprocess

    engine = engines.open_engine(spec.engine, worker_module(spec), spec.image_size, spec.batch_size)
    log.info("worker engine: %s for %s at %d px", engine.name, spec.handle, spec.image_size)
    decoder = tf.function(lambda blobs: preprocess.decode_batch(blobs, spec.image_size, spec.max_pixels),
                          input_signature=[tf.TensorSpec([None], tf.string)])
    return engine, decoder


def _reason(err: Exception) -> str:
    """One line from a TensorFlow or OS error, without TensorFlow's {{node ...}} decorations or Assert
    wrapper (retrain.errors.reason does the same once it exists on this branch's base)."""
    text = (getattr(err, "message", None) or str(err) or type(err).__name__).strip().splitlines()[0]
    text = re.sub(r"\{\{[^}]*\}\}", "", text).strip()
    match = re.fullmatch(r"assertion failed: \[(.*)\]", text)
    return (match.group(1) if match else text) or type(err).__name__


def decode_items(decoder, items: list[tuple[str, str]]) -> tuple[list[str], np.ndarray, list[str]]:
    """(keys, float32 [n, S, S, 3], skipped) for (key, path) items: files that cannot be read or decoded
    are left out and named in skipped as "path: reason" lines. A batch decodes in one call; only when
    that fails is each file decoded alone, to find the bad ones."""
    import tensorflow as tf

    keys, blobs, skipped = [], [], []
    for key, path in items:
        try:
            with storage.open_binary(path) as f:
                blobs.append(f.read())
            keys.append(key)
        except OSError as err:
            skipped.append(f"{path}: {_reason(err)}")
        except tf.errors.OpError as err:  # gfile errors on a remote path
            skipped.append(f"{path}: {_reason(err)}")
    try:
        return keys, decoder(tf.constant(blobs, tf.string)).numpy(), skipped
    except tf.errors.InvalidArgumentError:
        pass
    good_keys, images = [], []
    paths = dict(items)
    for key, blob in zip(keys, blobs):
        try:
            images.append(decoder(tf.constant([blob], tf.string)).numpy())
            good_keys.append(key)
        except tf.errors.InvalidArgumentError as err:
            skipped.append(f"{paths[key]}: {_reason(err)}")
    return good_keys, np.concatenate(images) if images else np.zeros([0, 0, 0, 3], np.float32), skipped
