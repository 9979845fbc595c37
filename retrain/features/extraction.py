"""Image files -> feature vectors of the frozen module, each image through the backbone once, ever.

Files are keyed by the SHA-256 of their bytes, so renamed, moved or duplicated images are found in
the cache and an edited image is not. Only the missing ones are decoded (retrain.images.preprocess, the very
function the serving graph embeds) and run through an engine (retrain.backbone.engines), batch by batch. A file
that does not decode is skipped with its reason; the rest of its batch is kept.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retrain import stop
from retrain.backbone import engines
from retrain.backbone.resolve import ModuleInfo
from retrain.features.cache import FeatureCache, for_module
from retrain.features.matrix import FeatureMatrix
from retrain.fs import PathLike, file_digest
from retrain.images import preprocess
from retrain.images.decoding import Decoder, by_bytes, decode_ahead, file_sizes

log = logging.getLogger(__name__)
# File bytes per engine batch. On photos (3 to 6 MB each) that is about ten: the engine's last call runs
# after every decode has finished, and on 100 photos a last batch of 36 cost 0.24 s there (a batch of 10, 0.07 s).
_BATCH_BYTES = 32 << 20


@dataclasses.dataclass(frozen=True)
class Extractor:
    """How an image file becomes a feature row: one value handed from step to step.

    The module at one input size, the engine that runs it, the cache that keeps its rows (None with
    --no-cache: rows are computed on every read), how many images go through at once, the decoding
    limit, and the scratch folder where a matrix too large for memory is kept (the caller owns it).
    """
    module: ModuleInfo           # the frozen feature-vector module: .handle, .path, .fingerprint, .feature_dim
    image_size: int              # square input side in pixels
    engine: str                  # auto | litert | tf (config.ENGINES)
    cache_dir: PathLike | None   # the content-addressed feature cache; None: no cache
    batch_size: int              # images per decode and engine call
    max_pixels: int              # largest width x height decoded
    workdir: Path                # scratch for file-backed matrices


@dataclasses.dataclass
class Extraction:
    """What extract() found: features of every path it could read, and why the others were skipped.
    A features.source.FeatureSource."""
    matrix: FeatureMatrix             # float32 [len(paths), D]; rows of skipped files are zeros
    kept: np.ndarray                  # bool [len(paths)]: the row holds the file's features
    skipped: list[tuple[Path, str]]   # (path, one-line reason) of each file that did not decode
    cached: int                       # rows read from the cache
    extracted: int                    # rows computed by the engine (duplicates of a file count once each)
    digests: list[str]                # SHA-256 hex of each file's bytes, in the order of paths
    stable = True                     # a trainer may keep rows it read: they never change

    @property
    def dim(self) -> int:
        return self.matrix.dim

    def chunks(self, rows: np.ndarray, size: int):
        """(rows, float32 [<= size, D]) chunks of the kept rows asked for: see FeatureMatrix.chunks."""
        return self.matrix.chunks(rows, size)


def open_cache(extractor: Extractor, variant: str = "") -> FeatureCache:
    """The cache namespace of the extractor's module at its size and preprocessing (the one Beam workers
    fill too); a variant (an augmented view) extends the module's fingerprint: a namespace of its own."""
    module = extractor.module
    return for_module(extractor.cache_dir, module.handle or module.path, module.fingerprint + variant,
                      extractor.image_size, preprocess.PREPROCESS_VERSION)


def source(extractor: Extractor, paths: list[Path], digests: list[str] | None = None) -> Extraction | LiveFeatures:
    """Feature rows for paths: extracted once through the cache, or (no cache) computed on every read.
    digests: the files' SHA-256 when the scan already read them, so no file is hashed twice."""
    if extractor.cache_dir is None:
        runner = engines.open_engine(extractor.engine, extractor.module, extractor.image_size)
        decoder = Decoder(extractor.image_size, extractor.max_pixels)
        return LiveFeatures(paths, runner, decoder, extractor.batch_size)
    return extract(extractor, paths, digests=digests)


def warm_up(extractor: Extractor, paths: list[Path], digests: list[str]) -> None:
    """Start readying the decoder (Decoder.prepare) when some of these files are not cached yet, and return.

    For a caller with start-up work of its own: the pipeline imports Keras and TF-Hub next (0.5 s),
    and a cold run on 100 phone photos then spent 3.08-3.29 s in its features stage against 3.31-3.59 s.
    """
    cache = open_cache(extractor) if extractor.cache_dir is not None else None
    first = next((path for path, digest in zip(paths, digests) if cache is None or digest not in cache), None)
    if first is not None:
        Decoder(extractor.image_size, extractor.max_pixels).prepare(first)


def extract(extractor: Extractor, paths: list[Path], *, variant: str = "", transform=None,
            digests: list[str] | None = None, name: str = "features") -> Extraction:
    """Features of `paths` in their order, duplicates included, through the cache when the extractor has one.

    Files that do not decode are skipped (and logged once each); they are never cached, so a fixed
    file is picked up by the next run. transform, with a variant naming it in the cache: decoded pixels
    float32 [n, S, S, 3] -> the same shape, before the module (an augmented view). digests: the files'
    SHA-256 when the caller has them (else read here); name: what the progress line calls these rows.
    """
    digests = digests if digests is not None else [file_digest(path) for path in paths]
    rows: dict[str, list[int]] = {}  # content digest -> every position holding those bytes
    for i, digest in enumerate(digests):
        rows.setdefault(digest, []).append(i)
    cache = open_cache(extractor, variant) if extractor.cache_dir is not None else None
    missing = [key for key in rows if cache is None or key not in cache]
    cached = [key for key in rows if cache is not None and key in cache]
    n_cached, n_missing = (sum(len(rows[k]) for k in keys) for keys in (cached, missing))
    log.info("%s: %s cached, %s to extract", name, f"{n_cached:,}", f"{n_missing:,}")
    module, size = extractor.module, extractor.image_size
    if missing:
        # Readied on the pool (at once if warm_up did it); the first file's format says which graph (JPEG-only or full).
        Decoder(size, extractor.max_pixels).prepare(paths[rows[missing[0]][0]])
    runner = engines.open_engine(extractor.engine, module, size) if missing else None
    dim = runner.dim if runner else cache.dim if cache is not None and cached else module.feature_dim or 0
    result = Extraction(FeatureMatrix(len(paths), dim, extractor.workdir), np.zeros(len(paths), bool), [],
                        n_cached, 0, digests)
    if cached:
        for dest, features in cache.read([k for k in cached for _ in rows[k]], [r for k in cached for r in rows[k]]):
            result.matrix.put(dest, features)
            result.kept[dest] = True
    if missing:
        items = [(key, paths[rows[key][0]]) for key in missing]
        with cache.writer() if cache is not None else nullcontext() as writer:
            for keys, features in run_batches(runner, items, size, extractor.batch_size, extractor.max_pixels,
                                              result.skipped, transform):
                dest = np.concatenate([rows[key] for key in keys])  # duplicates get their first path's row
                result.matrix.put(dest, np.repeat(features, [len(rows[key]) for key in keys], axis=0))
                result.kept[dest] = True
                result.extracted += len(dest)
                if writer is not None:
                    writer.add(keys, features)
    return result


def run_batches(runner, items: list[tuple[str, Path]], image_size: int, batch_size: int, max_pixels: int,
                skipped: list[tuple[Path, str]], transform=None, ahead: bool = True):
    """Yield (keys, float32 [n, D]) batch by batch for the items (key, path) that decode.

    With `ahead`, the next batches decode on background threads while the engine runs this one
    (retrain.images.decoding.decode_ahead); else decoding and the engine take turns. Photos decode at
    several times the backbone's cost, so overlapping them is what keeps every core busy.
    """
    decoder = Decoder(image_size, max_pixels)
    paths = [path for _, path in items]
    sizes = file_sizes(paths)  # looked up once, for the batches here and the decoder's runs in them
    groups = by_bytes(sizes, _BATCH_BYTES, batch_size)
    batches = [[items[i] for i in group] for group in groups]

    def decode(group: list[int], own: list[tuple[Path, str]]):
        return decoder([paths[i] for i in group], own, [sizes[i] for i in group])

    decoded = decode_ahead(decode, groups, skipped) if ahead else (decode(group, skipped) for group in groups)
    start = time.perf_counter()
    with tqdm(total=len(items), unit="img", desc=f"extracting ({runner.name})", leave=False,
              disable=None if log.isEnabledFor(logging.INFO) else True) as bar:
        try:
            for batch, (images, good) in zip(batches, decoded):
                stop.check()
                if good:
                    yield [batch[i][0] for i in good], runner(transform(images) if transform else images)
                bar.update(len(batch))
        finally:
            decoded.close()  # a stop or an error: background decodes are cancelled or awaited, not leaked
    seconds = time.perf_counter() - start
    log.info("extracted %s images in %.1f s (%.0f images/s, %s)", f"{len(items):,}", seconds,
             len(items) / max(seconds, 1e-9), runner.name)


class LiveFeatures:
    """Features computed afresh on every read: the --no-cache way, the backbone on every image every epoch.
    A features.source.FeatureSource.

    Reads like a FeatureMatrix (chunks), over the rows of `paths`; a file that does not decode is
    skipped with its reason the first time and left out of every later chunk.
    """

    stable = False  # the trainer must not keep chunks across epochs: the backbone runs each time

    def __init__(self, paths: list[Path], runner, decode: Decoder, batch_size: int) -> None:
        self.paths, self.runner, self.decode, self.dim = paths, runner, decode, runner.dim
        self.skipped: list[tuple[Path, str]] = []
        self._bad: set[int] = set()
        self.batch_size = batch_size

    @property
    def digests(self) -> list[str]:
        """SHA-256 hex of each file (for the run card's data fingerprint), read when asked."""
        return [file_digest(path) for path in self.paths]

    @property
    def kept(self) -> np.ndarray:
        """bool [len(paths)]: False for the files found not to decode so far."""
        mask = np.ones(len(self.paths), bool)
        mask[list(self._bad)] = False
        return mask

    def chunks(self, rows: np.ndarray, size: int):
        """Yield (rows that decoded, float32 [n, D]) for `rows`, at most batch_size images at a time."""
        size = min(size, self.batch_size)
        for start in range(0, len(rows), size):
            stop.check()
            part = [int(r) for r in rows[start:start + size] if int(r) not in self._bad]
            before = len(self.skipped)
            images, good = self.decode([self.paths[r] for r in part], self.skipped)
            self._bad.update(set(part) - {part[i] for i in good})
            if len(self.skipped) > before:
                log.debug("%d more files skipped during --no-cache training", len(self.skipped) - before)
            if good:
                yield np.array([part[i] for i in good], np.int64), self.runner(images)
