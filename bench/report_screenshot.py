"""Screenshot of report.html from a real run on Fashion-MNIST, for the README (docs/report.png).

Writes 30 training images per class of Fashion-MNIST (bench/fashion_mnist.py, Debian's
dataset-fashion-mnist) and 10 per class of its t10k set as a separate test folder, trains with the
default bundled module (1-2 minutes on 2 cores) and photographs the report.html the run wrote, in
Debian's headless chromium through Playwright.
Usage:
    python bench/report_screenshot.py [--out docs/report.png] [--work /tmp/report-shot]
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
from pathlib import Path

from PIL import Image

# This checkout's retrain and bench/fashion_mnist.py, whatever is installed.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import fashion_mnist

import retrain


def make_report(work: Path) -> Path:
    """Train on work/train with work/test as the test set; returns the run's report.html."""
    fashion_mnist.write("train", 30, work / "train")
    fashion_mnist.write("t10k", 10, work / "test")
    result = retrain.run(retrain.Config(images=work / "train", test_images=work / "test", output=work / "out"))
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
    with tempfile.TemporaryDirectory() as temp:
        page = make_report(args.work or Path(temp))
        print(f"report: {page}")
        screenshot(page, args.out)


if __name__ == "__main__":
    main()
