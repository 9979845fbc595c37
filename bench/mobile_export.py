"""Every on-device and server file of one finished run: conversion time, size, and agreement with the
SavedModel on the run's judged split (our interpreter, MediaPipe's ImageClassifier, onnxruntime).

Run after `python -m retrain --images data/fashion --output /tmp/x --tflite float32`; each kind is
converted again into --work (the run folder is left alone), calibrated on the run's training images
as the run does. Prints a markdown table and the load average before and after.
Usage:
    python bench/mobile_export.py --output /tmp/x --images data/fashion [--run 1] [--work /tmp/mobile-bench]
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "helpers"), str(ROOT)]
import numpy as np
import tensorflow as tf

from on_device import classify_with_mediapipe, judged_frames
from retrain.export import onnx_export, tflite

KINDS = ("float32", "float16", "int8", "uint8")
CONVERSION: dict[str, float] = {}  # seconds of the last conversion alone, by format


def _timed(name: str, convert):
    """convert, also recording its wall time in CONVERSION[name] (export_checked also decodes and checks)."""
    def run(*args, **kwargs):
        started = time.perf_counter()
        try:
            return convert(*args, **kwargs)
        finally:
            CONVERSION[name] = time.perf_counter() - started
    return run




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="--output of the run")
    parser.add_argument("--images", type=Path, required=True, help="--images of the run")
    parser.add_argument("--run", default="1")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mobile-bench"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()
    run_dir, saved = args.output / "runs" / args.run, args.output / "saved_model" / args.run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    labels = (run_dir / "labels.txt").read_text().splitlines()
    size = metrics["image_size"]
    rows = list(csv.DictReader((run_dir / "split.csv").open(encoding="utf-8")))
    split = "test" if any(r["split"] == "test" for r in rows) else "validation"
    train = [args.images / r["path"] for r in rows if r["split"] == "train"]
    judged = [r for r in rows if r["split"] == split]
    judged_paths, judged_labels = [args.images / r["path"] for r in judged], [labels.index(r["class"]) for r in judged]
    frames, _ = judged_frames(run_dir, args.images, size)
    pixels = frames.astype(np.float32) / 255
    loaded = tf.saved_model.load(str(saved))
    expected = loaded.signatures["serving_images"](images=tf.constant(pixels))["scores"].numpy().argmax(1)

    tflite.export_tflite = _timed("tflite", tflite.export_tflite)
    onnx_export.export_onnx = _timed("onnx", onnx_export.export_onnx)
    table, models = [], []
    for kind in KINDS:
        work = args.work / kind
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        report = tflite.export_checked(saved, work, kind, train_paths=train, val_paths=judged_paths,
                                       val_labels=judged_labels, image_size=size, max_pixels=50_000_000,
                                       max_drop=100.0)
        seconds = time.perf_counter() - started
        models.append(work / "model.tflite")
        table.append([f"tflite {kind}", CONVERSION["tflite"], seconds, (work / "model.tflite").stat().st_size, report])
    answers = classify_with_mediapipe(models, frames, args.work)
    for row, answer in zip(table, answers):
        assert answer["names"] == labels, row[0]
        row.append(float(np.mean(np.array(answer["scores"]).argmax(1) == expected)))
    work = args.work / "onnx"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = onnx_export.export_checked(saved, work, val_paths=judged_paths, val_labels=judged_labels,
                                        image_size=size, max_pixels=50_000_000, max_drop=100.0)
    report["tflite_accuracy"] = report["onnx_accuracy"]
    table.append(["onnx", CONVERSION["onnx"], time.perf_counter() - started, (work / "model.onnx").stat().st_size,
                  report, None])

    print(f"judged split: {split}, {len(frames)} images at {size}x{size}; SavedModel accuracy "
          f"{table[0][4]['saved_model_accuracy']:.3f}")
    print("| file | conversion (s) | conversion + check (s) | size (MB) | accuracy | drop (points) | changed answers "
          "| MediaPipe agrees with the SavedModel |")
    print("|---|---|---|---|---|---|---|---|")
    for name, convert, seconds, nbytes, report, agreement in table:
        agree = "n/a (onnxruntime)" if agreement is None else f"{100 * agreement:.1f} %"
        print(f"| {name} | {convert:.1f} | {seconds:.1f} | {nbytes / 1e6:.2f} | {report['tflite_accuracy']:.3f} | "
              f"{report['drop_points']:.2f} | {report['changed_answers']} of {report['images']} | {agree} |")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
