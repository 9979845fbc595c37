"""Train on B, reuse on A: fine-tune on 5 Fashion-MNIST classes (B), export the backbone as a module,
train a new layer on the 5 other classes (A) with it and with the ImageNet module, side by side.

B: t-shirt_top, trouser, pullover, dress, coat x 300 training images. A: sandal, shirt, sneaker, bag,
ankle_boot x 50. A's test set: its 5 classes of t10k (5,000 images), scored through each export's
serving signature (`retrain evaluate`). Every step is a real `retrain.run`, as the CLI runs it:
    python -m retrain --images B --fine-tune --export-module MODULE
    python -m retrain --images A [--module MODULE]
Prints a markdown table. Usage:
    python bench/transfer.py --work /tmp/transfer
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import fashion_mnist

from retrain.config import Config
from retrain.export.evaluate import evaluate
from retrain.pipeline import run

B_CLASSES = fashion_mnist.CLASSES[:5]


def split_classes(source: Path, keep: list[str], out: Path) -> Path:
    """out/<class> for the classes in keep, moved out of a full class-per-folder tree."""
    out.mkdir(parents=True, exist_ok=True)
    for name in keep:
        shutil.move(str(source / name), str(out / name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work, module_b = args.work, args.work / "module-b"
    if not (work / "B").exists():
        fashion_mnist.write("train", 300, work / "all-b")
        fashion_mnist.write("train", 50, work / "all-a", skip=300)
        fashion_mnist.write("t10k", None, work / "all-test")
        a_classes = [c for c in fashion_mnist.CLASSES if c not in B_CLASSES]
        split_classes(work / "all-b", B_CLASSES, work / "B")
        split_classes(work / "all-a", a_classes, work / "A")
        split_classes(work / "all-test", a_classes, work / "A-test")
    shutil.rmtree(module_b, ignore_errors=True)
    start = time.perf_counter()
    b = run(Config(images=work / "B", output=work / "runs" / "B", cache_dir=work / "cache", fine_tune=True,
                   export_module=module_b))
    b_seconds = time.perf_counter() - start
    rows = []
    for name, module in (("ImageNet (bundled efficientnet_lite0)", "efficientnet_lite0"),
                         ("B-adapted (exported from B)", str(module_b))):
        start = time.perf_counter()
        a = run(Config(images=work / "A", module=module, output=work / "runs" / f"A-{len(rows)}",
                       cache_dir=work / "cache"))
        seconds = time.perf_counter() - start
        scored = evaluate(a.saved_model_dir, work / "A-test", output=work / "eval" / str(len(rows)))
        rows.append((name, scored, seconds))
    tuned = b.fine_tune
    print(f"\nB: {sum(b.counts['train'].values())} training images, fine-tune kept: {tuned['kept']}, "
          f"validation loss {tuned['before']['val_loss']:.4f} -> {tuned['after']['val_loss']:.4f}, {b_seconds:.0f} s\n")
    print("| module for A | A test accuracy | A test images | time of the A run (s) |")
    print("|---|---:|---:|---:|")
    for name, scored, seconds in rows:
        print(f"| {name} | {scored.accuracy:.4f} | {scored.count} | {seconds:.0f} |")
    print(f"\nB and A together: {b_seconds + sum(s for _, _, s in rows):.0f} s")


if __name__ == "__main__":
    main()
