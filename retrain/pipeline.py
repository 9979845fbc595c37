"""run(config): the recipe. Scan and split, resolve the module, extract features, train the new layer,
export, report; each step lives in its own module and this one only calls them in order."""
from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
from pathlib import Path

import numpy as np

from retrain import native
from retrain.config import Config
from retrain.errors import RetrainError
from retrain.export.server_config import write_server_config
from retrain.inputs import gather, scan, split
from retrain.reports import metrics, run_folder
from retrain.training import distribute, tuning

log = logging.getLogger(__name__)
WARMUP_IMAGES = 3  # real requests replayed by TF Serving at load: enough to trace every branch once
LATENCY_IMAGES = 5  # test images timed one by one through the exported model


@dataclasses.dataclass(frozen=True)
class Result:
    version: int                  # the run's number N
    run_dir: Path                 # <output>/runs/N: labels.txt, metrics.json, report.html, ...
    saved_model_dir: Path | None  # <output>/saved_model/N, or runs/N/saved_model (held back); None: --dry-run
    published: bool               # False when --min-accuracy held the model back
    labels: list[str]
    counts: dict[str, dict[str, int]]  # split -> label -> images (skipped files excluded)
    metrics: dict[str, dict]      # split -> metrics summary (accuracy, loss, per class, ...)
    focus: str                    # the split the reports and the gate judge: "test", else "validation"
    epochs: int                   # epoch of the kept weights
    class_weight: str             # "balanced" or "none", what the loss used
    seconds: dict[str, float]     # wall time per stage and in total
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path relative to --images, reason)
    tflite: dict | None = None    # with --tflite: kind, both accuracies, drop in points, changed answers
    features: dict | None = None  # {"cached", "extracted"} rows of the feature cache; None with --no-cache
    fine_tune: dict | None = None  # with --fine-tune: kept, validation loss/accuracy before and after, epochs
    augment: dict | None = None   # with --augment: kept (without/average/with), views, validation loss/accuracy

    @property
    def val_accuracy(self) -> float:
        return self.metrics["validation"]["accuracy"]

    @property
    def train_counts(self) -> dict[str, int]:
        return self.counts["train"]

    @property
    def val_counts(self) -> dict[str, int]:
        return self.counts["validation"]


def run(config: Config) -> Result:
    """Do what `python -m retrain` does: train a new layer on config.images, export it and report."""
    clock = run_folder.Clock()
    found = gather.read(config)
    labels, parts = found.labels, found.parts
    version, run_dir = run_folder.reserve(config.output_dir)
    if config.use_cache and not isinstance(config.feature_cache_dir, str):  # a URL is checked when opened
        run_folder.writable(config.feature_cache_dir, "--cache-dir")
    split.write_split_csv(run_dir / "split.csv", parts, labels)
    scan.write_skipped_csv(run_dir / "skipped.csv", found.skipped)
    if config.dry_run:
        return Result(version, run_dir, None, False, labels, {n: _counts(labels, np.array([e.label for e in part]))
                      for n, part in parts.items()}, {}, "", 0, "", clock.lap("scan"), found.skipped)
    clock.lap("scan")
    native.import_tensorflow()  # only now: input errors above print alone, without its start-up noise
    if config.fine_tune:
        distribute.make(config.strategy)  # first: collective ops are set up before any other TensorFlow work
    from retrain.backbone import resolve

    module = resolve.load_info(config.module)
    image_size = resolve.image_size_for(module, config.image_size)
    examples = [e for name in split.SPLITS for e in parts[name]]
    with tempfile.TemporaryDirectory(prefix=".features-", dir=run_dir) as workdir:  # the matrix is scratch
        source = _features(config, module, image_size, [e.path for e in examples], Path(workdir))
        clock.lap("features")
        trained, scored, kept, weighting, augmented = _train(config, module, image_size, labels, source, examples,
                                                             parts, Path(workdir))
        clock.lap("training")
        tuned = tuning.phase_two(config, module, image_size, trained.head, kept, dict(zip(
            [e.path for e in examples], source.digests)), Path(workdir)) if config.fine_tune else None
        adapted = tuning.export_backbone(config, tuned, module, image_size, run_dir)
        if tuned is not None and tuned.kept:  # the backbone changed: its features, and so the scores, did too
            module = resolve.load_info(str(adapted))
            source = _features(config, module, image_size, [e.path for e in examples], Path(workdir))
            scored, _ = _score(trained.head, source, examples, parts)
        if tuned is not None:
            clock.lap("fine-tune")
    focus = "test" if len(scored["test"].y_true) else "validation"
    accuracy = float(np.mean(scored[focus].scores.argmax(1) == scored[focus].y_true))
    published = config.min_accuracy is None or accuracy >= config.min_accuracy
    target = config.output_dir / "saved_model" / str(version) if published else run_dir / "saved_model"
    saved = _export(config, module, image_size, labels, trained, target, kept["validation"],
                    {f"{focus}_accuracy": accuracy})
    write_server_config(config.output_dir)  # models.config, batching_parameters.txt: for TF Serving's docker run
    lite = _tflite(config, saved, run_dir, image_size, kept["train"], kept[focus]) if config.tflite else None
    clock.lap("export")
    counts = {name: _counts(labels, s.y_true) for name, s in scored.items()}
    cache_use = {"cached": source.cached, "extracted": source.extracted} if config.use_cache else None
    skips = found.skipped + gather.relative(examples, source.skipped)
    if source.skipped:
        scan.write_skipped_csv(run_dir / "skipped.csv", skips)
    result = Result(version, run_dir, saved, published, labels, counts, {}, focus, trained.epoch, weighting,
                    clock.seconds, skips, lite, cache_use, tuning.report(tuned), augmented)
    summaries, facts = run_folder.write_reports(result, config, scored, trained.history,
                                          found.test_root if focus == "test" else Path(config.images), image_size,
                                          [e.path for e in kept[focus][:LATENCY_IMAGES]])
    result = dataclasses.replace(result, metrics=summaries, seconds=clock.lap("report"))
    run_folder.write_records(result, config, module, image_size, facts, source.digests)
    if not published:
        raise RetrainError(f"--min-accuracy: {focus} accuracy {accuracy:.4f} is below {config.min_accuracy:g}; "
                           f"the model was not published (kept in {saved} with the reports)", exit_code=3)
    return result


def _train(config: Config, module, image_size: int, labels: list[str], source, examples: list[scan.Example],
           parts: dict, workdir: Path):
    """Train the head on the kept training rows (with --augment, also on their views, kept under workdir);
    returns (trained, Scored per split, kept examples per split, the class weighting, the --augment report)."""
    from retrain.training import trainer

    side = np.array([name for name in split.SPLITS for _ in parts[name]])
    y = np.array([e.label for e in examples], np.int32)
    rows = {name: np.flatnonzero(source.kept & (side == name)) for name in split.SPLITS}
    gather.check_classes_kept(labels, y[rows["train"]], config.images)
    weights, weighting = metrics.class_weights(_counts(labels, y[rows["train"]]), config.class_weight)
    log.info("training the new layer on %d images for up to %d epochs (class weights: %s)",
             len(rows["train"]), config.epochs, weighting)
    train = functools.partial(
        trainer.train_head, val_rows=rows["validation"], num_classes=len(labels), dropout=config.dropout,
        learning_rate=config.learning_rate, batch_size=config.batch_size, epochs=config.epochs,
        patience=config.patience, seed=config.seed, class_weights=None if weights is None else np.array(weights))
    trained, augmented = train(source, y, rows["train"]), None
    if config.augment:
        trained, augmented = tuning.augmented_head(config, module, image_size, source, y, rows,
                                                   [e.path for e in examples], trained, train, workdir)
    scored, kept = _score(trained.head, source, examples, parts)
    return trained, scored, kept, weighting, augmented


def _score(head, source, examples: list[scan.Example], parts: dict) -> tuple[dict, dict]:
    """(Scored per split: the head's softmax on every row with features, the examples of those rows per
    split). After training, since --no-cache may have found more files that do not decode."""
    from retrain.reports.writers import Scored
    from retrain.training import trainer

    side = np.array([name for name in split.SPLITS for _ in parts[name]])
    y = np.array([e.label for e in examples], np.int32)
    scored, kept = {}, {}
    for name in split.SPLITS:
        found, scores = trainer.predict(head, source, np.flatnonzero(source.kept & (side == name)))
        scored[name] = Scored(y[found], scores, [examples[i].rel for i in found])
        kept[name] = [examples[i] for i in found]
    return scored, kept


def _export(config: Config, module, image_size: int, labels: list[str], trained, target: Path,
            warmups: list[scan.Example], scores: dict) -> Path:
    """The classifier (frozen module + trained head + preprocessing) as a SavedModel at target."""
    from retrain.backbone import keras_models
    from retrain.export import saved_model

    log.info("exporting the SavedModel (takes seconds)")
    return saved_model.publish(
        keras_models.build_classifier(module.path, image_size, trained.head), target, labels=labels,
        image_size=image_size,
        max_pixels=config.max_pixels, warmup_images=[e.path.read_bytes() for e in warmups[:WARMUP_IMAGES]],
        info={"module_handle": config.module, "module_path": module.path, "module_fingerprint": module.fingerprint,
              "metrics": {"val_accuracy": float(trained.val_accuracy), "epochs": trained.epoch, **scores}})


def _tflite(config: Config, saved: Path, run_dir: Path, image_size: int, train: list, judged: list) -> dict:
    """runs/N/model.tflite, checked against the SavedModel on the judged split (test, else validation)."""
    from retrain.export import tflite

    return tflite.export_checked(saved, run_dir, config.tflite, train_paths=[e.path for e in train],
                                 val_paths=[e.path for e in judged], val_labels=[e.label for e in judged],
                                 image_size=image_size, max_pixels=config.max_pixels, max_drop=config.max_export_drop)


def _features(config: Config, module, image_size: int, paths: list[Path], workdir: Path):
    """Feature rows for paths: extracted once through the cache, or (--no-cache) computed every epoch."""
    from retrain.backbone import engines
    from retrain.features import extraction

    if not config.use_cache:
        runner = engines.open_engine(config.engine, module, image_size, config.batch_size)
        decoder = extraction.Decoder(image_size, config.max_pixels)
        return extraction.LiveFeatures(paths, runner, decoder, config.batch_size)
    return extraction.extract(paths, module=module, image_size=image_size, engine=config.engine,
                            cache_dir=config.feature_cache_dir, batch_size=config.batch_size,
                            max_pixels=config.max_pixels, workdir=workdir)


def _counts(labels: list[str], y: np.ndarray) -> dict[str, int]:
    return {name: int(np.sum(y == i)) for i, name in enumerate(labels)}
