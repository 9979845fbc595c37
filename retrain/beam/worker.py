"""What a Beam worker runs, without Beam: the module on this machine, its engine, and batch decoding.

Kept apart from retrain.beam.launch so it can be used and tested without Apache Beam installed.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from retrain import fs
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
    engine: str         # auto | litert | tf, as retrain.backbone.engines.open_engine takes it


def worker_module(spec: WorkerSpec):
    """The module as a retrain.backbone.resolve.ModuleInfo on this worker, its weights checked by fingerprint.

    On the launcher's machine (DirectRunner) module_path exists; a remote worker resolves the handle
    itself (building the bundled module, or reading the TF-Hub cache), and must get the same weights,
    or its features would land in a namespace that names other weights.
    """
    from retrain.backbone import resolve

    path = spec.module_path
    if not fs.exists(path):
        path = resolve.resolve(spec.handle)
        found = resolve.fingerprint(path)
        if found != spec.fingerprint:
            raise RetrainError(f"--module {spec.handle}: this worker resolved {path} with fingerprint {found}, "
                               f"expected {spec.fingerprint} as on the launcher; install the same module version")
    return resolve.ModuleInfo(spec.handle, path, spec.image_size, None, spec.fingerprint)


def open_worker_engine(spec: WorkerSpec):
    """(engine, decoder): retrain.backbone.engines.open_engine's choice for this machine, and a
    retrain.images.decoding.Decoder (the batch decoding a local run uses, skipping what does not decode)."""
    from retrain.backbone import engines
    from retrain.images.decoding import Decoder

    engine = engines.open_engine(spec.engine, worker_module(spec), spec.image_size)
    log.info("worker engine: %s for %s at %d px", engine.name, spec.handle, spec.image_size)
    return engine, Decoder(spec.image_size, spec.max_pixels)


def decode_items(decoder, items: list[tuple[str, str]]) -> tuple[list[str], np.ndarray, list[str]]:
    """(keys, float32 [n, S, S, 3], skipped) for (key, path) items: files that cannot be read or decoded
    are left out and named in skipped as "path: reason" lines, as a local run words them."""
    skipped: list = []
    images, good = decoder([path for _, path in items], skipped)
    return [items[i][0] for i in good], images, [f"{path}: {why}" for path, why in skipped]
