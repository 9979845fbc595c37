"""Train on B, reuse on A: fine-tune on 5 Fashion-MNIST classes (B), export the backbone as a module,
retrain a new head on the 5 other classes (A) with it and with the ImageNet module, side by side.

B: t-shirt_top, trouser, pullover, dress, coat x 300 training images. A: sandal, shirt, sneaker, bag,
ankle_boot x 50 (the next 50 of each class). A's test set: its 5 classes of t10k (5,000 images), each
scored through the exported serving signature (`retrain evaluate`). Prints markdown. Usage:
    python bench/transfer.py --work /tmp/transfer [--layers N] [--learning-rate LR]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fashion_mnist

from retrain import (
    backbone,
    data,
    evaluate,
    extract,
    finetune,
    head_training,
    model,
    modules,
    train,
    views,
)
from retrain.config import Config

B, A = fashion_mnist.CLASSES[:5], fashion_mnist.CLASSES[5:]


def write(split: str, per_class: int | None, out: Path, keep: list[str], skip: int = 0) -> None:
    fashion_mnist.write(split, per_class, out, skip)
    for name in fashion_mnist.CLASSES:
        if name not in keep:
            shutil.rmtree(out / name)


def adapt_on_b(b_dir: Path, out: Path, work: Path, settings: finetune.FineTuneSettings) -> tuple[str, float]:
    """Phase 1 + phase 2 on B, then the backbone exported to `out`; returns (summary, seconds)."""
    start = time.perf_counter()
    config = Config(images=b_dir, cache_dir=work / "cache")
    _, examples = data.scan(b_dir)
    train_set, val_set = data.split(examples, config.validation_split)
    info = modules.load_info(config.module)
    everything = [e.path for e in train_set + val_set]
    feats = np.array(extract.extract_features(everything, module=info, image_size=224, engine=config.engine,
                                              cache_dir=config.feature_cache_dir, batch_size=64,
                                              max_pixels=config.max_pixels, workdir=work))
    y = np.array([e.label for e in train_set + val_set], np.int32)
    model.set_seed(config.seed)  # the same phase-1 head in every run, whatever phase 2 does
    head, _, _ = head_training.fit(feats, y, len(train_set), len(B), config)
    batches = [views.file_batches([e.path for e in s], y_s, 224, config.max_pixels, settings.batch_size)
               for s, y_s in ((train_set, y[:len(train_set)]), (val_set, y[len(train_set):]))]
    keys = tuple([extract.file_digest(e.path) for e in s] for s in (train_set, val_set))
    result = finetune.fine_tune(info.path, 224, head, batches[0], batches[1], settings,
                                cache_dir=config.feature_cache_dir, keys=keys)
    backbone.export_module(result.backbone, 224, out)
    summary = (f"B validation accuracy {result.before[1]:.3f} -> {result.after[1]:.3f}, phase 2 "
               f"{'kept' if result.kept else 'not kept (no lower validation loss)'} after {result.epochs} epochs")
    return summary, time.perf_counter() - start


def retrain_a(a_dir: Path, test_dir: Path, module: str, work: Path, name: str) -> tuple[float, float]:
    """(A's test accuracy through the exported model, seconds of the retrain) with `module`."""
    start = time.perf_counter()
    result = train.run(Config(images=a_dir, module=module, output=work / name, cache_dir=work / "cache"))
    seconds = time.perf_counter() - start
    return evaluate.evaluate(result.saved_model_dir.parent, test_dir).accuracy, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=finetune.FineTuneSettings.layers)
    parser.add_argument("--learning-rate", type=float, default=finetune.FineTuneSettings.learning_rate)
    parser.add_argument("--epochs", type=int, default=finetune.FineTuneSettings.epochs)
    parser.add_argument("--b-per-class", type=int, default=300)
    parser.add_argument("--a-per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=None, help="t10k images per A class (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    b_dir, a_dir, test_dir = args.work / "B", args.work / "A", args.work / "A-t10k"
    if not test_dir.exists():
        write("train", args.b_per_class, b_dir, B)
        write("train", args.a_per_class, a_dir, A, skip=args.b_per_class)
        write("t10k", args.test_per_class, test_dir, A)
    print(f"load at start: {os.getloadavg()[0]:.1f}", flush=True)
    settings = finetune.FineTuneSettings(layers=args.layers, learning_rate=args.learning_rate, epochs=args.epochs)
    module_dir = args.work / f"module-B-{int(time.time())}"
    summary, b_seconds = adapt_on_b(b_dir, module_dir, args.work, settings)
    print(summary, f"({b_seconds:.0f} s)", flush=True)
    imagenet, imagenet_s = retrain_a(a_dir, test_dir, "efficientnet_lite0", args.work, f"A-imagenet-{module_dir.name}")
    print(f"A with ImageNet module: {imagenet:.4f} ({imagenet_s:.0f} s)", flush=True)
    adapted, adapted_s = retrain_a(a_dir, test_dir, str(module_dir), args.work, f"A-B-{module_dir.name}")
    print(f"A with B-adapted module: {adapted:.4f} ({adapted_s:.0f} s)", flush=True)
    print(f"\nload at end: {os.getloadavg()[0]:.1f}; fine-tune settings {settings}\n{summary}\n\n"
          f"| module for A's new head | A test accuracy (5,000 t10k images) | wall s |\n|---|---|---|\n"
          f"| ImageNet (efficientnet_lite0) | {imagenet:.4f} | {imagenet_s:.0f} |\n"
          f"| B-adapted (fine-tuned on B, exported) | {adapted:.4f} | {b_seconds:.0f} on B + {adapted_s:.0f} on A |")


if __name__ == "__main__":
    main()
