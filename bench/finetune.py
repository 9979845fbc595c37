"""Frozen head vs --augment vs --fine-tune on 10 classes x 500 Fashion-MNIST images, side by side.

One process, one split (retrain.data.split, the run's own), one seed. Each head is scored on all
10,000 t10k images: the frozen and augmented heads on t10k features of the ImageNet module, the
fine-tuned one on features of the module it exported (a new cache namespace, by fingerprint). The
per-epoch section times one phase-2 epoch per --fine-tune-layers value on a subset and scales it to
the whole training set. Prints markdown. Usage:
    python bench/finetune.py --work /tmp/ftbench [--per-class 500] [--epoch-images 256]
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fashion_mnist

from retrain import (
    augment,
    backbone,
    data,
    extract,
    finetune,
    head_training,
    model,
    modules,
    views,
)
from retrain.config import Config

log = logging.getLogger("bench")


def features(paths, info, config, work) -> np.ndarray:
    return np.array(extract.extract_features(paths, module=info, image_size=224, engine=config.engine,
                                             cache_dir=config.feature_cache_dir, batch_size=config.batch_size,
                                             max_pixels=config.max_pixels, workdir=work))


def score(head, feats: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(head.predict(feats, batch_size=1024, verbose=0).argmax(1) == labels))


def epoch_times(info, train, y, config, subset: int, total: int) -> list[str]:
    """Two phase-2 epochs per layers value on `subset` images; the second (no tracing) scaled to `total`."""
    rows = []
    for layers in (16, 5, 2):
        head = model.build_head(1280, 10, config.dropout)
        batches = views.file_batches(train[:subset], y[:subset], 224, config.max_pixels, 32)
        settings = finetune.FineTuneSettings(layers=layers, epochs=2, patience=2)
        result = finetune.fine_tune(info.path, 224, head, batches, batches, settings)
        rows.append(f"| {layers if layers < 16 else 'all (16)'} | {result.seconds_per_epoch * total / subset:.0f} | "
                    f"{result.cut_seconds * 1000 / (2 * subset):.0f} | {os.getloadavg()[0]:.1f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--epoch-images", type=int, default=256, help="subset for the per-epoch timing; 0 skips")
    parser.add_argument("--only-epochs", action="store_true", help="stop after the per-epoch timing")
    parser.add_argument("--layers", type=int, default=finetune.FineTuneSettings.layers)
    parser.add_argument("--learning-rate", type=float, default=finetune.FineTuneSettings.learning_rate)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--test-per-class", type=int, default=None, help="t10k images per class (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train_dir, test_dir = args.work / "train", args.work / "t10k"
    if not train_dir.exists():
        fashion_mnist.write("train", args.per_class, train_dir)
        fashion_mnist.write("t10k", args.test_per_class, test_dir)
    config = Config(images=train_dir, cache_dir=args.work / "cache", output=args.work / "runs")
    _, examples = data.scan(train_dir)
    train_set, val_set = data.split(examples, config.validation_split)
    _, tests = data.scan(test_dir)
    info = modules.load_info(config.module)
    train, val = [e.path for e in train_set], [e.path for e in val_set]
    y_train, y_val = (np.array([e.label for e in s], np.int32) for s in (train_set, val_set))
    y_test = np.array([e.label for e in tests], np.int32)
    print(f"load at start: {os.getloadavg()[0]:.1f}; {len(train)} training, {len(val)} validation, "
          f"{len(tests)} test images", flush=True)
    if args.epoch_images:
        print(f"| fine-tune layers | s per epoch ({len(train)} images) | s per 1,000 images to the cut, once | load |"
              "\n|---|---|---|---|", flush=True)
        epoch_times(info, train, y_train, config, args.epoch_images, len(train))
    if args.only_epochs:
        return
    rows = []
    start = time.perf_counter()
    model.set_seed(config.seed)
    f_train, f_val = features(train, info, config, args.work), features(val, info, config, args.work)
    frozen, _, val_acc = head_training.fit(np.concatenate([f_train, f_val]), np.concatenate([y_train, y_val]),
                                           len(train), 10, config)
    phase1 = time.perf_counter() - start
    test_features = features([e.path for e in tests], info, config, args.work)
    rows.append(("frozen head (default)", val_acc, score(frozen, test_features, y_test), phase1))
    print(rows[-1], flush=True)

    start = time.perf_counter()
    settings = augment.AugmentSettings()
    extra = [views.view_features(train, module=info, image_size=224, engine=config.engine,
                                 cache_dir=config.feature_cache_dir, batch_size=64, max_pixels=config.max_pixels,
                                 view=v, seed=config.seed, settings=settings) for v in range(args.views)]
    model.set_seed(config.seed)
    stacked = np.concatenate([f_train, *extra, f_val])
    aug_head, _, aug_val = head_training.fit(stacked, np.concatenate([y_train] * (1 + args.views) + [y_val]),
                                             len(train) * (1 + args.views), 10, config)
    rows.append((f"--augment ({args.views} views)", aug_val, score(aug_head, test_features, y_test),
                 time.perf_counter() - start + phase1))
    print(rows[-1], flush=True)

    start = time.perf_counter()
    head = model.build_head(1280, 10, config.dropout)
    head.set_weights(frozen.get_weights())
    settings2 = finetune.FineTuneSettings(layers=args.layers, learning_rate=args.learning_rate)
    keys = ([extract.file_digest(p) for p in train], [extract.file_digest(p) for p in val])
    result = finetune.fine_tune(info.path, 224, head, views.file_batches(train, y_train, 224, config.max_pixels, 32),
                                views.file_batches(val, y_val, 224, config.max_pixels, 32), settings2,
                                cache_dir=config.feature_cache_dir, keys=keys)
    out = args.work / f"module-ft-{int(time.time())}"
    backbone.export_module(result.backbone, 224, out)
    phase2 = time.perf_counter() - start
    ft_info = modules.load_info(str(out))
    assert ft_info.fingerprint != info.fingerprint
    ft_test = test_features if not result.kept else features([e.path for e in tests], ft_info, config, args.work)
    name = (f"--fine-tune (layers {args.layers}, lr {args.learning_rate:g}; phase 2 "
            f"{'kept' if result.kept else 'not kept'}, {result.epochs} epochs, {result.seconds_per_epoch:.0f} s/epoch)")
    rows.append((name, result.after[1], score(head, ft_test, y_test), phase1 + phase2))
    print(rows[-1], flush=True)
    print(f"\nload at end: {os.getloadavg()[0]:.1f}\n\n| recipe | val acc | t10k acc | wall s (training) |\n|---|---|---|---|")
    for name, v, t, s in rows:
        print(f"| {name} | {v:.3f} | {t:.4f} | {s:.0f} |")
    print(dataclasses.asdict(settings))


if __name__ == "__main__":
    main()
