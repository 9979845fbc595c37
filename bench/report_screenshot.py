"""Screenshot of report.html from a real run on Fashion-MNIST, for the README (docs/report.png).

Writes 30 training images per class of Fashion-MNIST (bench/fashion_mnist.py, Debian's
dataset-fashion-mnist) and 10 per class of its t10k set as a separate test folder, trains with the
default bundled module (1-2 minutes on 2 cores), scores every split with the exported SavedModel,
writes the reports and photographs the page in Debian's headless chromium through Playwright.
Usage:
    python bench/report_screenshot.py [--out docs/report.png] [--work /tmp/report-shot]
"""
from __future__ import annotations

import argparse
import io
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# This checkout's retrain and bench/fashion_mnist.py, whatever is installed.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import fashion_mnist

import retrain
from retrain import data
from retrain.report import Scored, write_reports
from retrain.report_tf import median_latency_ms

EPOCH_LINE = re.compile(r"epoch (\d+)/\d+\s+val_loss ([\d.]+)\s+val_acc ([\d.]+)")


class EpochLines(logging.Handler):
    """Validation loss and accuracy per epoch from the training log, while run() returns no history."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.history: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = EPOCH_LINE.search(record.getMessage())
        if found:
            self.history.append({"epoch": int(found[1]), "val_loss": float(found[2]),
                                 "val_accuracy": float(found[3])})


def scores_of(version_dir: Path, examples: list[data.Example]) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    batches = [serve(image_bytes=tf.constant([e.path.read_bytes() for e in examples[i:i + 64]]))["scores"].numpy()
               for i in range(0, len(examples), 64)]
    return np.concatenate(batches)


def make_report(work: Path) -> Path:
    """Train on work/train, report with work/test as the test split; returns report.html."""
    fashion_mnist.write("train", 30, work / "train")
    fashion_mnist.write("t10k", 10, work / "test")
    epochs = EpochLines()
    logging.getLogger("retrain").addHandler(epochs)
    logging.getLogger("retrain.model").setLevel(logging.DEBUG)
    start = time.monotonic()
    result = retrain.run(retrain.Config(images=work / "train", output=work / "out"))
    labels, examples = data.scan(work / "train")
    train, validation = data.split(examples, 0.2)  # what run() used
    _, test = data.scan(work / "test")
    splits = {name: Scored(np.array([e.label for e in found]), scores_of(result.saved_model_dir, found),
                           [e.rel for e in found])
              for name, found in (("train", train), ("validation", validation), ("test", test))}
    latency = median_latency_ms(result.saved_model_dir, [e.path.read_bytes() for e in test[:5]], repeats=5)
    facts = {"module": "efficientnet_lite0 (bundled)", "image size": "224 × 224",
             "images": f"{len(train)} training, {len(validation)} validation, {len(test)} test (Fashion-MNIST t10k)",
             "epochs": f"{result.epochs} kept (early stopping on validation loss)",
             "median latency": f"{latency:.1f} ms per image (serving_default, batch of 1)",
             "time": f"{time.monotonic() - start:.0f} s", "model": str(result.saved_model_dir)}
    history = getattr(result, "history", None) or epochs.history
    write_reports(result.run_dir, labels=labels, splits=splits, images_root=work / "test", facts=facts,
                  history=history, kept_epoch=result.epochs, title="retrain report · Fashion-MNIST")
    return result.run_dir / "report.html"


def screenshot(page_file: Path, out: Path, width: int = 1000) -> None:
    """Full-page PNG at `width` CSS pixels, reduced to a 256-colour palette to keep it small."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(page_file.as_uri(), wait_until="load")
        raw = page.screenshot(full_page=True)
        browser.close()
    image = Image.open(io.BytesIO(raw)).convert("RGB").quantize(256, dither=Image.Dither.NONE)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"{out}: {image.size[0]} x {image.size[1]} px, {out.stat().st_size / 1024:.0f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().handlers[0].setLevel(logging.INFO)  # epoch lines are read at debug level, not shown
    with tempfile.TemporaryDirectory() as temp:
        page = make_report(args.work or Path(temp))
        print(f"report: {page}")
        screenshot(page, args.out)


if __name__ == "__main__":
    main()
