"""Near-copies of test images placed in training: how many does `retrain check` find, and how many clean test
images does it flag? Also the cosine of each kind of copy, to choose --near-duplicate.

Fashion-MNIST enlarged to 256 pixels stands in for photos (on 28-pixel originals the same edits move the
features far more). Training: --train-per-class images of each class from `train`; test (--test-images):
--test-per-class of each class from `t10k`. Copies of every test image are placed in training, one
kind of edit per copy, in turn: JPEG at quality 75, resized to 200 pixels, cropped by 4 pixels a side,
brightened by 10 %, and all four at once. Usage:
    python bench/near_duplicates.py --work /tmp/near [--train-per-class 100] [--test-per-class 50]
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import fashion_mnist

from retrain.config import Config
from retrain.pipeline import check

SIDE = 256


def jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


EDITS = {"jpeg q75": jpeg, "resized to 200": lambda im: im.resize((200, 200), Image.BICUBIC),
         "cropped 4 px": lambda im: im.crop((4, 4, SIDE - 4, SIDE - 4)),
         "brightened 10%": lambda im: ImageEnhance.Brightness(im).enhance(1.1)}
EDITS["all four"] = lambda im: jpeg(ImageEnhance.Brightness(
    EDITS["cropped 4 px"](im).resize((200, 200), Image.BICUBIC)).enhance(1.1))


def write(split: str, per_class: int, out: Path, skip: int = 0) -> list[Path]:
    """out/<class>/<split>-<i>.png at SIDE pixels (RGB, bicubic) for per_class images of each class."""
    images, labels = (fashion_mnist.read_idx(fashion_mnist.SOURCE / f) for f in fashion_mnist.FILES[split])
    written = []
    for k, name in enumerate(fashion_mnist.CLASSES):
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == k)[skip:skip + per_class]:
            path = out / name / f"{split}-{i:05d}.png"
            Image.fromarray(images[i]).convert("RGB").resize((SIDE, SIDE), Image.BICUBIC).save(path)
            written.append(path)
    return written


def issues(run_dir: Path) -> list[dict]:
    with open(run_dir / "data_issues.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["kind"] == "near_duplicate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--threshold", type=float, default=Config.near_duplicate)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    work = args.work
    clean, dirty, test = work / "clean", work / "with-copies", work / "test"
    if not test.exists():
        write("train", args.train_per_class, clean)
        write("train", args.train_per_class, dirty)
        tests = write("t10k", args.test_per_class, test)
        names = list(EDITS)
        for i, path in enumerate(tests):
            edit = names[i % len(names)]
            copy = EDITS[edit](Image.open(path).convert("RGB"))
            copy.save(dirty / path.parent.name / f"copy-{edit.split()[0]}-{path.stem}.png")
    common = {"test_images": test, "output": work / "out", "cache_dir": work / "cache",
              "near_duplicate": args.threshold}
    start = time.perf_counter()
    flagged_clean = issues(check(Config(images=clean, **common)).run_dir)
    found = issues(check(Config(images=dirty, **common)).run_dir)
    seconds = time.perf_counter() - start
    n_test = len(list(test.rglob("*.png")))
    edit_of = {}
    for path in test.rglob("*.png"):
        edit_of[path.relative_to(test).as_posix()] = next(
            e.split()[0] for e in EDITS if (dirty / path.parent.name / f"copy-{e.split()[0]}-{path.stem}.png").exists())
    copy_cosine = {row["path"]: float(row["score"]) for row in found
                   if row["partner"].split("/")[-1].startswith("copy-")}
    clean_cosine = [float(row["score"]) for row in flagged_clean]
    print(f"{n_test} test images, {args.train_per_class * 10} training images (+ {n_test} copies); "
          f"both checks {seconds:.0f} s; rows listed from cosine {args.threshold}")
    thresholds = [t for t in (0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98) if t >= args.threshold]
    edits = sorted(set(edit_of.values()))
    print("| threshold | " + " | ".join(f"found: {'all four' if e == 'all' else e}" for e in edits)
          + " | found: every copy | clean test images flagged |")
    print("|---" * (len(edits) + 3) + "|")
    for t in thresholds:
        cells = []
        for e in edits:
            mine = [rel for rel, edit in edit_of.items() if edit == e]
            cells.append(f"{sum(copy_cosine.get(rel, -1) >= t for rel in mine)}/{len(mine)}")
        hit = sum(c >= t for c in copy_cosine.values())
        false = sum(c >= t for c in clean_cosine)
        print(f"| {t:.2f} | " + " | ".join(cells)
              + f" | {hit / n_test:.1%} | {false}/{n_test} ({false / n_test:.1%}) |")
    for e in edits:
        values = sorted(copy_cosine.get(rel, -1.0) for rel, edit in edit_of.items() if edit == e)
        print(f"{e}: copy cosine min {values[0]:.3f}, 5th percentile {values[len(values) // 20]:.3f}")
    print(f"clean: highest cosines {sorted(clean_cosine)[-5:]}")


if __name__ == "__main__":
    main()
