"""Write Fashion-MNIST images as PNG folders: <out>/<class>/<split>-<index>.png.

Reads the idx files of Debian's `dataset-fashion-mnist` package (apt-get install dataset-fashion-mnist),
which install under /usr/share/datasets/fashion-mnist. Used for the bundled demo set (data/fashion)
and by the benchmark. Usage:
    python bench/fashion_mnist.py --split train --per-class 500 --out /tmp/fmnist-train
"""
from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip) -> uint8 array of the shape its header gives."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write(split: str, per_class: int | None, out: Path, skip: int = 0, source: Path = SOURCE) -> int:
    """Write up to per_class images of each class (after skipping `skip` of each); returns the count written."""
    images_file, labels_file = FILES[split]
    images, labels = read_idx(source / images_file), read_idx(source / labels_file)
    written = 0
    for k, name in enumerate(CLASSES):
        (out / name).mkdir(parents=True, exist_ok=True)
        indices = np.flatnonzero(labels == k)[skip:]
        for i in indices[:per_class] if per_class else indices:
            Image.fromarray(images[i]).save(out / name / f"{split}-{i:05d}.png")
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(FILES), default="train")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: all)")
    parser.add_argument("--skip", type=int, default=0, help="skip this many images of each class first")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(f"wrote {write(args.split, args.per_class, args.out, args.skip)} images to {args.out}")


if __name__ == "__main__":
    main()
