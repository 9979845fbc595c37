"""The run folder <output>/runs/N: its number, and the records every run leaves in it.

labels.txt, split.csv, metrics.json, run.json (the model card) and the reports of retrain.reports.writers.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from retrain import fs, stop
from retrain.errors import RetrainError
from retrain.reports import summary, writers

log = logging.getLogger(__name__)


class Clock:
    """Wall time per stage: lap(name) closes a stage and returns every stage so far, with the total."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> dict[str, float]:
        """Close stage `name`; a stop asked for during it is honoured here, between stages."""
        stop.check()
        now = time.monotonic()
        self.seconds[name], self.last = round(now - self.last, 2), now
        self.seconds["total"] = round(now - self.start, 2)
        return dict(self.seconds)


def reserve(output: Path) -> tuple[int, Path]:
    """Create <output>/runs/N for the next free N (one more than any earlier run or version) and
    return (N, that folder).

    mkdir is atomic, so two runs started at once never share a number, and N is also the run's
    SavedModel version, so they never write the same version either. Checked before any training.
    """
    output = Path(output)
    try:
        for sub in ("runs", "saved_model"):
            (output / sub).mkdir(parents=True, exist_ok=True)
        start = max([*fs.numbered(output / "runs"), *fs.numbered(output / "saved_model")], default=0) + 1
        version, run_dir = fs.make_numbered(output / "runs", start)
    except OSError as e:
        raise RetrainError(f"--output: cannot write to {output} ({e.strerror or e}); "
                           "expected a writable folder") from None
    writable(run_dir, "--output")
    return version, run_dir


def writable(folder: Path, option: str) -> None:
    """Raise RetrainError naming `option` unless a file can be written in `folder` (made if missing)."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        # A name of its own: with one shared name, a run starting beside another deleted the other's probe.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as e:
        raise RetrainError(f"{option}: cannot write to {folder} ({e.strerror or e}); "
                           "expected a writable folder") from None


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def write_run_reports(result, *, model_dir: Path, module_name: str, image_size: int, scored: dict,
                      history: list[dict], images_root: Path, latency_paths: list[Path],
                      tensorboard_dir: Path | None) -> tuple[dict[str, dict], dict]:
    """report.html and its parts for the run, of the export in model_dir (result.saved_model_dir is where
    it will be published); returns ({split: metrics summary}, {model_bytes, latency_ms})."""
    from retrain.reports import tensorboard

    latency = tensorboard.median_latency_ms(model_dir, [p.read_bytes() for p in latency_paths]) \
        if latency_paths else None
    size = _bytes_under(model_dir)
    facts = {"module": module_name, "image size": f"{image_size}x{image_size}", "classes": len(result.labels),
             "images": ", ".join(f"{sum(c.values())} {name}" for name, c in result.counts.items()),
             "kept epoch": result.epochs, "class weights": result.class_weight, "model": str(result.saved_model_dir),
             "published": "yes" if result.published else "no (below --min-accuracy)",
             "model size": f"{size / 1e6:.1f} MB",
             "median latency": "n/a" if latency is None else f"{latency:.1f} ms per image (serving_default, batch 1)",
             "skipped files": len(result.skipped)}
    if result.augment:
        facts["augment"] = summary.augment_text(result.augment)
    if result.fine_tune:
        facts["fine-tune"] = summary.fine_tune_text(result.fine_tune)
    if result.tflite:
        facts[f"tflite ({result.tflite['kind']})"] = summary.export_text(result.tflite, "tflite_accuracy")
    if result.onnx:
        facts["onnx"] = summary.export_text(result.onnx, "onnx_accuracy")
    summaries = writers.write_report_files(result.run_dir, labels=result.labels,
                                           splits={n: s for n, s in scored.items() if len(s.y_true)},
                                           judged=result.focus, images_root=images_root, facts=facts,
                                           history=history, kept_epoch=result.epochs,
                                           title=f"retrain · run {result.version}")
    if tensorboard_dir is not None:
        log.info("TensorBoard scalars in %s", tensorboard.tensorboard_log(tensorboard_dir, history))
    return summaries, {"model_bytes": size, "latency_ms": latency}


def write_records(result, *, options: dict, module, image_size: int, facts: dict, digests: list[str]) -> None:
    """labels.txt, metrics.json (one object per split, plus the keys earlier versions wrote) and run.json.

    options: every option of the run by name (the Config's fields); module: backbone.resolve.ModuleInfo;
    facts: what write_run_reports measured (model_bytes, latency_ms); digests: SHA-256 of every image file.
    """
    summaries = result.metrics
    fs.write_atomic(result.run_dir / "labels.txt", "".join(f"{label}\n" for label in result.labels))
    metrics = {"val_accuracy": summaries["validation"]["accuracy"], "epochs": result.epochs,
               "seconds": result.seconds["total"], "train_counts": result.train_counts,
               "val_counts": result.val_counts, "module": options["module"], "image_size": image_size,
               "skipped": len(result.skipped), "tflite": result.tflite, "onnx": result.onnx, **summaries,
               "counts": result.counts,
               **facts,
               "class_weight": result.class_weight, "focus": result.focus, "published": result.published,
               "fine_tune": result.fine_tune, "augment": result.augment}
    writers.write_json(result.run_dir / "metrics.json", metrics)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    fingerprint = writers.data_fingerprint(result.run_dir / "split.csv", digests)
    card = writers.run_card(module={"name": options["module"], "path": module.path, "fingerprint": module.fingerprint},
                            image_size=image_size, classes=result.labels, counts=result.counts, options=options,
                            metrics=summaries, class_weight=result.class_weight, data_fingerprint=fingerprint,
                            seconds=result.seconds, saved_model=str(result.saved_model_dir),
                            published=result.published, skipped=result.skipped, tflite=result.tflite,
                            onnx=result.onnx, features=result.features, fine_tune=result.fine_tune,
                            augment=result.augment)
    writers.write_json(result.run_dir / "run.json", card)
