"""Engines that run the frozen module on float32 image batches: TensorFlow or a LiteRT conversion.

Both take float32 [n, S, S, 3] in [0, 1] and return float32 [n, D]. On a 2-core CPU the LiteRT
interpreter (XNNPACK) ran the bundled EfficientNet-Lite0 at 184 images/s against TensorFlow's 168
(docs/benchmarks.md; the 2x seen elsewhere was before batch norm was folded), with features that
agree to ~1e-5, so `auto` converts the module once, keeps the flatbuffer next to the built modules
and reuses it; a module that does not convert falls back to TensorFlow.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain import fs, native
from retrain.backbone.resolve import feature_output, tf1_signature
from retrain.config import module_home
from retrain.errors import RetrainError, reason

log = logging.getLogger(__name__)


def _forward(loaded):
    """A Python function images -> features for a loaded TF-Hub feature-vector SavedModel."""
    if callable(loaded):  # TF2 reusable SavedModel: __call__(images[, training])
        def call(images):
            try:
                return feature_output(loaded(images, training=False))
            except (TypeError, ValueError):  # no concrete function takes `training`
                return feature_output(loaded(images))
        return call
    # TF1 Hub format (or a plain export): the same signature retrain.backbone.resolve read the contract from.
    signature = tf1_signature(loaded.signatures)
    name = next(key for key, spec in signature.structured_input_signature[1].items() if spec.shape.rank == 4)
    return lambda images: feature_output(signature(**{name: images}))


def _traced(module_path: str, image_size: int) -> tuple[object, tf.types.experimental.ConcreteFunction]:
    """(the loaded module, its forward pass traced for float32 [None, S, S, 3]); keep both alive."""
    loaded = tf.saved_model.load(module_path)
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")
    return loaded, tf.function(_forward(loaded), input_signature=[spec]).get_concrete_function()


class TFEngine:
    """The SavedModel run by TensorFlow inside one traced function."""

    name = "tf"

    def __init__(self, module_path: str, image_size: int) -> None:
        self._loaded, self._function = _traced(module_path, image_size)
        self.dim = int(self(np.zeros([1, image_size, image_size, 3], np.float32)).shape[1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._function(tf.constant(images)).numpy()


def litert_path(fingerprint: str, image_size: int) -> Path:
    """Where the LiteRT conversion of a module at one input size lives: with the built modules."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", fingerprint)
    return module_home() / "litert" / f"{safe}-{image_size}.tflite"


def convert(module_path: str, image_size: int, destination: Path) -> None:
    """Write the module as a float32, builtin-ops-only LiteRT flatbuffer with a free batch dimension.

    Atomic: the file appears complete or not at all, so two runs converting at once are harmless.
    Raises whatever the converter raises for ops LiteRT lacks.
    """
    loaded, function = _traced(module_path, image_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    # Builtins only: SELECT_TF_OPS would need the flex delegate, which ai-edge-litert does not ship.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    destination.parent.mkdir(parents=True, exist_ok=True)
    fs.write_atomic(destination, flatbuffer)


class LiteRTEngine:
    """The module's LiteRT conversion run by ai-edge-litert with one thread per core.

    `instead` (error -> engine) stands in when the first plan fails (open_engine's fallback for a module
    that converts but cannot be planned): that plan happens at the first call, see _plan.
    """

    def __init__(self, model_path: Path, instead: Callable[[Exception], object]) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with native.quiet():  # "Created TensorFlow Lite XNNPACK delegate"
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=os.cpu_count())
        (inp,), (out,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self._input, self._output = inp["index"], out["index"]
        self._pixels = list(inp["shape"][1:])
        self._batch = 0  # tensors are planned by the first call
        self._instead, self._fallback = instead, None
        self.dim = int(out["shape"][-1])

    @property
    def name(self) -> str:
        return self._fallback.name if self._fallback is not None else "litert"

    def _plan(self, batch: int) -> None:
        """Size the tensors for `batch` images. Re-planning keeps XNNPACK's packed weights and took under
        1 ms (batch 64 -> 36 -> 64), where padding a short last batch to 64 cost its missing images' time.

        The first plan packs the weights: 0.2 s holding the GIL. Done at the first call, it runs while the
        next batches decode; done on opening, it held up the decoder's start (photos extracted at 3.49
        and 3.13 x the old rate with it, 2.91 x without: docs/benchmarks.md, sixth round).
        """
        if batch != self._batch:
            with native.quiet():
                self._interpreter.resize_tensor_input(self._input, [batch, *self._pixels], strict=False)
                self._interpreter.allocate_tensors()
            self._batch = batch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self._batch == 0 and self._fallback is None:
            try:
                self._plan(len(images))
            except Exception as err:  # allocate_tensors raises RuntimeError or ValueError for a plan it cannot make
                self._fallback = self._instead(err)
        if self._fallback is not None:
            return self._fallback(images)
        self._plan(len(images))
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(images, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()


def open_engine(engine: str, module, image_size: int):
    """An engine for module at image_size: 'tf', 'litert' (RetrainError if it cannot) or 'auto'.

    auto: TensorFlow when a GPU is visible (LiteRT's XNNPACK runs on the CPU only), else LiteRT,
    converting the module once, and TensorFlow again when the module does not convert or its first
    plan fails (at the first batch, see LiteRTEngine).
    """
    if engine == "tf":
        return TFEngine(module.path, image_size)
    if engine == "auto" and tf.config.list_physical_devices("GPU"):
        log.info("GPU found: extracting features with TensorFlow on it")
        return TFEngine(module.path, image_size)

    def instead(err: Exception) -> TFEngine:
        """What runs when LiteRT cannot: TensorFlow for auto, a one-line error for --engine litert."""
        if engine == "litert":
            raise RetrainError(f"--engine litert: found a module LiteRT cannot run ({reason(err)}), "
                               "expected a convertible module or --engine tf/auto") from err
        log.warning("LiteRT cannot run this module (%s); extracting with TensorFlow", reason(err))
        return TFEngine(module.path, image_size)

    path = litert_path(module.fingerprint, image_size)
    try:
        if not path.exists():
            start = time.perf_counter()
            convert(module.path, image_size, path)
            log.info("LiteRT: converted the module once in %.1f s", time.perf_counter() - start)
        log.debug("LiteRT model %s", path)
        return LiteRTEngine(path, instead)
    except Exception as err:  # the converter raises many types (ConverterError, ValueError, RuntimeError...)
        return instead(err)
