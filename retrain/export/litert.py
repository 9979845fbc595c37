"""Running a LiteRT (TFLite) file's serving_images signature on float pixels, whatever its kind.

The one place that knows how a quantised input is fed (through its scale and zero point), how a
quantised output is read back, and that a fixed batch of 1 is fed image by image.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from retrain import native
from retrain.errors import RetrainError
from retrain.export.assets import IMAGES_SIGNATURE
from retrain.export.parity import BATCH


def _dequantised(values: np.ndarray, detail: dict) -> np.ndarray:
    if values.dtype == np.float32:
        return values
    scale, zero = detail["quantization"]
    return (values.astype(np.float32) - zero) * scale


def outputs(model: Path | bytes, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the file's serving_images signature, float32 [N, ...], for images float32
    [N, H, W, 3] in [0, 1] (N may be 0). model: a path, or the flatbuffer's bytes."""
    given = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    with native.quiet():
        interpreter = Interpreter(**given, num_threads=os.cpu_count() or 1)
    runner = interpreter.get_signature_runner(IMAGES_SIGNATURE)
    source, targets = runner.get_input_details()["images"], runner.get_output_details()
    expected = source["shape_signature"]
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(expected[1:]):
        raise RetrainError(f"images: found shape {images.shape}, expected [N, {', '.join(map(str, expected[1:]))}]")
    batch = 1 if expected[0] == 1 else BATCH

    def run(chunk: np.ndarray) -> dict[str, np.ndarray]:
        if source["dtype"] != np.float32:
            scale, zero = source["quantization"]
            info = np.iinfo(source["dtype"])
            chunk = np.clip(np.round(chunk / scale + zero), info.min, info.max).astype(source["dtype"])
        return {name: _dequantised(np.array(out), targets[name]) for name, out in runner(images=chunk).items()}

    with native.quiet():  # the first call prints "Created TensorFlow Lite XNNPACK delegate"
        chunks = [run(images[i:i + batch]) for i in range(0, len(images), batch)]
    return {name: (np.concatenate([c[name] for c in chunks]) if chunks
                   else np.zeros((0, *detail["shape"][1:]), np.float32)).astype(np.float32)
            for name, detail in targets.items()}
