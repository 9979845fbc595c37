"""Decoding speed of retrain.images.preprocess: one traced call per batch (map_fn) versus one per image.

Both variants run in one process, interleaved, best of three, so a busy machine hurts them alike.
Usage: python bench/decode.py FOLDER [--size 224] [--images 640]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from retrain.images import preprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=640)
    args = parser.parse_args()
    paths = sorted(p for p in args.folder.rglob("*") if p.is_file())[: args.images]
    blobs = [p.read_bytes() for p in paths]
    size, limit = args.size, 50_000_000
    batch = tf.function(lambda b: preprocess.decode_batch(b, size, limit),
                        input_signature=[tf.TensorSpec([None], tf.string)])
    one = tf.function(lambda b: preprocess.decode_resize(b, size, limit),
                      input_signature=[tf.TensorSpec([], tf.string)])
    variants = {
        "decode_batch, one call per 64": lambda chunk: batch(tf.constant(chunk)).numpy(),
        "decode_resize, one call per image": lambda chunk: np.stack([one(tf.constant(b)).numpy() for b in chunk]),
    }
    best = dict.fromkeys(variants, 0.0)
    for _ in range(3):
        for name, run in variants.items():
            start = time.perf_counter()
            for i in range(0, len(blobs), 64):
                run(blobs[i:i + 64])
            best[name] = max(best[name], len(blobs) / (time.perf_counter() - start))
    for name, rate in best.items():
        print(f"{name}: {rate:.0f} images/s")


if __name__ == "__main__":
    main()
