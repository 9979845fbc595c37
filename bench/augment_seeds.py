"""--augment's three candidate heads, seed by seed: trained without views, with views, and their average.

Uses the run's own pieces (extraction.extract, views.add_views, trainer.train_head, augmented.choose) on
the 10 x 500 Fashion-MNIST folder that bench/finetune.py writes, with its split, for several seeds, and
scores every candidate on the 10,000 t10k images from their cached features (what the export computes
from image bytes: tests/export/test_saved_model.py holds them within 1e-5). Seconds per seed once the views are
cached, so the run-to-run spread can be measured, not guessed. Prints a markdown table. Usage:
    python bench/augment_seeds.py --work /tmp/ftbench [--seeds 0,1,2,3,4] [--train-per-class 40]
        [--settings '{"max_brightness_delta": 0, "max_contrast_change": 0}']
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import fashion_mnist

from retrain.backbone import keras_models, resolve
from retrain.config import Config
from retrain.features.extraction import Extractor, extract
from retrain.features.views import add_views
from retrain.images import augment
from retrain.inputs import gather
from retrain.training import trainer
from retrain.training.augmented import choose


def features(extractor: Extractor, paths: list[Path]):
    found = extract(extractor, paths)
    assert found.kept.all(), found.skipped
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--train-per-class", type=int, default=None, help="keep only this many training images")
    parser.add_argument("--settings", default="{}", help="augment.AugmentSettings fields as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    train_dir, test_dir = args.work / "train", args.work / "t10k"
    if not train_dir.exists():
        fashion_mnist.write("train", 500, train_dir)
        fashion_mnist.write("t10k", None, test_dir)
    settings = augment.AugmentSettings(**json.loads(args.settings))
    config = Config(images=train_dir, output=args.work / "seeds", cache_dir=args.work / "cache", augment=True)
    found = gather.read(config.images, test_images=None, validation_split=config.validation_split,
                        test_split=config.test_split, max_pixels=config.max_pixels, strict=False)
    module = resolve.load_info(config.module)
    image_size = resolve.image_size_for(module, config.image_size)
    parts = found.parts
    examples = parts["train"] + parts["validation"]
    y = np.array([e.label for e in examples], np.int32)
    train_rows = np.arange(len(parts["train"]))
    if args.train_per_class:
        train_rows = np.concatenate([train_rows[y[train_rows] == k][:args.train_per_class]
                                     for k in range(len(found.labels))])
    rows = {"train": train_rows, "validation": np.arange(len(parts["train"]), len(examples))}
    test_paths = sorted(test_dir.glob("*/*"))
    test_y = np.array([found.labels.index(p.parent.name) for p in test_paths], np.int32)
    with tempfile.TemporaryDirectory() as workdir:
        extractor = Extractor(module=module, image_size=image_size, engine=config.engine,
                              cache_dir=config.feature_cache_dir, batch_size=config.batch_size,
                              max_pixels=config.max_pixels, workdir=Path(workdir))
        source = features(extractor, [e.path for e in examples])
        test = features(extractor, test_paths)
        fed = add_views(extractor, source, y, rows["train"], [e.path for e in examples], views=config.augment_views,
                        seed=config.seed, settings=settings)
        table = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            train = functools.partial(trainer.train_head, val_rows=rows["validation"], num_classes=len(found.labels),
                                      dropout=config.dropout, learning_rate=config.learning_rate,
                                      batch_size=config.batch_size, epochs=config.epochs, patience=config.patience,
                                      seed=seed)
            plain, with_views = train(source, y, rows["train"]), train(*fed)
            _, report = choose(plain, with_views, source, y, rows["validation"], config.augment_views)
            heads = {"without": plain.head, "with": with_views.head,
                     "average": keras_models.average(plain.head, with_views.head)}
            accuracy = {name: trainer.score(head, test, test_y, np.arange(len(test_y)))[1]
                        for name, head in heads.items()}
            table.append((seed, accuracy, report))
            print(f"seed {seed}: {accuracy} exported {report['kept']}", file=sys.stderr, flush=True)
    print(f"\n{len(rows['train'])} training images, {len(rows['validation'])} validation, {len(test_y)} t10k; "
          f"views: {config.augment_views} per image, {settings}\n")
    print("| seed | t10k: without views | with views | average | validation loss: without / with / average "
          "| exported | exported vs without (points) |")
    print("|---:|---:|---:|---:|---|---|---:|")
    for seed, accuracy, report in table:
        loss, kept = report["val_loss"], report["kept"]
        print(f"| {seed} | {accuracy['without']:.4f} | {accuracy['with']:.4f} | {accuracy['average']:.4f} | "
              f"{loss['without']:.4f} / {loss['with']:.4f} / {loss['average']:.4f} | {kept} | "
              f"{100 * (accuracy[kept] - accuracy['without']):+.2f} |")


if __name__ == "__main__":
    main()
