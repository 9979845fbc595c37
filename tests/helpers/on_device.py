"""On-device checks: MediaPipe's ImageClassifier in a process of its own, and a run's judged split as the uint8
frames a camera would give it."""
from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrain.export import parity

HELPER = Path(__file__).with_name("mediapipe_classify.py")


def classify_with_mediapipe(models: list[Path], images: np.ndarray, tmp_path: Path) -> list[dict]:
    """{"names", "scores"} per model from MediaPipe Tasks' ImageClassifier on uint8 images, in one process
    of its own (starting one takes seconds)."""
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip("needs mediapipe (pip install 'retrain[mediapipe]'; the Makefile installs it)")
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run([sys.executable, str(HELPER), str(tmp_path / "images.npy"), *map(str, models)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    return [answers[str(model)] for model in models]


def judged_frames(run_dir: Path, images_root: Path, image_size: int, max_pixels: int = 50_000_000
                  ) -> tuple[np.ndarray, list[str]]:
    """(uint8 [N, S, S, 3] RGB, class names): the run's test split (else validation) from split.csv, decoded
    and resized exactly as for training, then rounded to bytes as a camera frame would be."""
    rows = list(csv.DictReader((Path(run_dir) / "split.csv").open(encoding="utf-8")))
    split = "test" if any(r["split"] == "test" for r in rows) else "validation"
    rows = [r for r in rows if r["split"] == split]
    frames, names = [], []
    for images, good in parity.decoded([Path(images_root) / r["path"] for r in rows], image_size, max_pixels):
        frames.append(np.round(images * 255).astype(np.uint8))
        names += [rows[i]["class"] for i in good]
    return np.concatenate(frames), names
