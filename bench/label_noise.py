"""Likely label errors on Fashion-MNIST with a seeded share of labels flipped: precision and recall of the
ranked label_error list of `retrain check`.

10 classes x 500 training images (bench/fashion_mnist.py) in one flat folder, their labels in a
--labels file in which a seeded share is changed to another class at random. Each setting is a real
`retrain check --images FLAT --labels FILE` (the cache makes every check after the first cost no
backbone pass). Reported: precision among the n top-ranked (n = number flipped) and the share of the
flipped files among the top 2n. Usage:
    python bench/label_noise.py --work /tmp/label-noise [--rates 0.05 0.1] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import csv
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import fashion_mnist

from retrain.config import Config
from retrain.pipeline import check


def flat_folder(work: Path, per_class: int) -> tuple[Path, list[tuple[str, int]]]:
    """work/flat/<class>-<file>.png and the true (name, class index) of each."""
    tree, flat = work / "tree", work / "flat"
    if not flat.exists():
        fashion_mnist.write("train", per_class, tree)
        flat.mkdir(parents=True)
        for k, name in enumerate(fashion_mnist.CLASSES):
            for path in sorted((tree / name).glob("*.png")):
                shutil.copy(path, flat / f"{k}-{path.name}")
    files = sorted(p.name for p in flat.glob("*.png"))
    return flat, [(f, int(f.split("-")[0])) for f in files]


def write_labels(path: Path, truth: list[tuple[str, int]], rate: float, seed: int) -> set[str]:
    """A labels file with round(rate * N) labels moved to another class at random; returns the flipped names."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(truth), int(round(rate * len(truth))), replace=False)
    given = {name: k for name, k in truth}
    for i in flipped:
        name, k = truth[i]
        given[name] = (k + int(rng.integers(1, 10))) % 10
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([name, fashion_mnist.CLASSES[k]] for name, k in given.items())
    return {truth[i][0] for i in flipped}


def ranked(run_dir: Path) -> list[str]:
    with open(run_dir / "data_issues.csv", newline="") as f:
        return [row["path"] for row in csv.DictReader(f) if row["kind"] == "label_error"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache-dir", type=Path, help="feature cache [default: <work>/cache]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    flat, truth = flat_folder(args.work, args.per_class)
    print("| flipped | seed | precision at n | recall at 2n | check seconds |")
    print("|---|---|---|---|---|")
    for rate in args.rates:
        for seed in args.seeds:
            flipped = write_labels(args.work / "labels.csv", truth, rate, seed)
            n = len(flipped)
            start = time.perf_counter()
            found = check(Config(images=flat, labels=args.work / "labels.csv", output=args.work / "out",
                                 cache_dir=args.cache_dir or args.work / "cache"))
            seconds = time.perf_counter() - start
            order = ranked(found.run_dir)
            precision = len(flipped & set(order[:n])) / n
            recall = len(flipped & set(order[:2 * n])) / n
            print(f"| {rate:.0%} ({n}) | {seed} | {precision:.3f} | {recall:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
