"""Frozen head vs --augment vs --fine-tune on 10 classes x 500 Fashion-MNIST images, side by side.

Each recipe is a real `retrain.run` (what `python -m retrain --images ... [--augment | --fine-tune]
[--seed S]` does) on the same folder and split, for each seed, sharing one feature cache; each export is
then scored on all 10,000 t10k images through its serving signature (`retrain evaluate`). Prints a
markdown table.
Usage:
    python bench/finetune.py --work /tmp/ftbench [--per-class 500] [--recipes frozen,augment,fine-tune] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import fashion_mnist

from retrain.config import Config
from retrain.export.evaluate import evaluate
from retrain.pipeline import run
from retrain.reports.summary import AUGMENT_CHOICES

RECIPES = {"frozen": {}, "augment": {"augment": True}, "fine-tune": {"fine_tune": True}}


def exported(result) -> str:
    """What the recipe chose to export: --augment's head, or whether --fine-tune kept phase 2."""
    if result.augment:
        return AUGMENT_CHOICES[result.augment["kept"]]
    if result.fine_tune:
        return "phase 2" if result.fine_tune["kept"] else "phase 1 (phase 2 not kept)"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="0", help="comma-separated; the split does not depend on the seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train, test = args.work / "train", args.work / "t10k"
    if not train.exists():
        fashion_mnist.write("train", args.per_class, train)
        fashion_mnist.write("t10k", None, test)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in args.recipes.split(","):
            start = time.perf_counter()
            result = run(Config(images=train, output=args.work / "runs" / name, cache_dir=args.work / "cache",
                                seed=seed, **RECIPES[name]))
            seconds = time.perf_counter() - start
            scored = evaluate(result.saved_model_dir, test, output=args.work / "eval" / f"{name}-{seed}")
            chosen = exported(result)
            rows.append((seed, name, result.val_accuracy, scored.accuracy, seconds, chosen))
            print(f"seed {seed} {name}: validation {result.val_accuracy:.4f}, t10k {scored.accuracy:.4f}, "
                  f"{seconds:.0f} s {chosen}", file=sys.stderr, flush=True)
    print(f"\n{args.per_class} training images per class; t10k: {scored.count} images; "
          f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end\n")
    print("| seed | recipe | validation accuracy | t10k accuracy | wall time (s) | exported |")
    print("|---:|---|---:|---:|---:|---|")
    for seed, name, val, t10k, seconds, chosen in rows:
        print(f"| {seed} | {name} | {val:.4f} | {t10k:.4f} | {seconds:.0f} | {chosen} |")


if __name__ == "__main__":
    main()
