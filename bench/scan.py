"""Cost of the scan's per-file check (retrain.inputs.formats.check) by format and size, and of a whole scan.

Photo-like images (smooth gradients plus noise) are written to a temporary folder; each check is
timed best of three, so a busy machine hurts less. Usage: python bench/scan.py [FOLDER]
(FOLDER: a class-per-folder image set to scan as a whole, e.g. data/fashion).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from retrain.inputs import formats, scan

CASES = [("JPEG", 640, 480), ("JPEG", 2000, 1500), ("JPEG", 2309, 1732), ("JPEG", 4000, 3000),
         ("PNG", 640, 480), ("PNG", 2000, 1500), ("WEBP", 1024, 768), ("GIF", 640, 480), ("BMP", 640, 480)]


def photo(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).integers(0, 24, (height, width, 3))
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1) + noise
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def best_ms(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    print("| format | size | file KB | check ms |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, width, height in CASES:
            path = Path(tmp) / f"{fmt}-{width}.{fmt.lower()}"
            photo(width, height).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            assert formats.check(path, 50_000_000) is None
            ms = best_ms(lambda p=path: formats.check(p, 50_000_000))
            print(f"| {fmt} | {width}x{height} | {path.stat().st_size // 1024} | {ms:.1f} |")
    if len(sys.argv) > 1:
        found = []
        ms = best_ms(lambda: found.append(scan.scan(Path(sys.argv[1]), 50_000_000)), repeats=2)
        n = len(found[-1].examples)
        print(f"\nscan of {sys.argv[1]}: {n} images, {ms:.0f} ms, {ms / n:.2f} ms per image")


if __name__ == "__main__":
    main()
