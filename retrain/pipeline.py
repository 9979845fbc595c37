"""run(config): the recipe. Scan and split, resolve the module, extract features, train the new layer,
export, report, publish; each step lives in its own room and this module only calls them in order."""
from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from retrain import native
from retrain.audit import examine
from retrain.config import Config
from retrain.errors import RetrainError
from retrain.export.server_config import write_server_config
from retrain.inputs import gather, scan, split
from retrain.inputs.scan import Example
from retrain.reports import metrics, run_folder
from retrain.training import distribute

log = logging.getLogger(__name__)
WARMUP_IMAGES = 3  # real requests replayed by TF Serving at load: enough to trace every branch once
LATENCY_IMAGES = 5  # test images timed one by one through the exported model


@dataclasses.dataclass(frozen=True)
class Result:
    """What a run did, in plain values: the summary, --json, metrics.json and run.json are made from it."""
    version: int                  # the run's number N
    run_dir: Path                 # <output>/runs/N: labels.txt, metrics.json, report.html, ...
    labels: list[str]
    counts: dict[str, dict[str, int]]  # split -> label -> images (skipped files excluded)
    seconds: dict[str, float]     # wall time per stage and in total
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path relative to --images, reason)
    saved_model_dir: Path | None = None  # <output>/saved_model/N, or runs/N/saved_model (held back); None: --dry-run
    published: bool = False       # False when --min-accuracy held the model back (or --dry-run)
    metrics: dict[str, dict] = dataclasses.field(default_factory=dict)  # split -> metrics summary
    focus: str = ""               # the split the reports and the gate judge (split.judged)
    epochs: int = 0               # epoch of the kept weights
    class_weight: str = ""        # "balanced" or "none", what the loss used
    tflite: dict | None = None    # with --tflite: kind, both accuracies, drop in points, changed answers
    features: dict | None = None  # {"cached", "extracted"} rows of the feature cache; None with --no-cache
    fine_tune: dict | None = None  # with --fine-tune: kept, validation loss/accuracy before and after, epochs
    augment: dict | None = None   # with --augment: kept (without/average/with), views, validation loss/accuracy
    data: examine.Audit | None = None  # duplicates, leaks, likely label errors, outliers (data_issues.csv)
    onnx: dict | None = None      # with --onnx: both accuracies, drop in points, changed answers
    # A --tflite/--onnx file that failed to convert or lost more than --max-export-drop: raised by run() once
    # the SavedModel is published and the reports written, so a failed conversion never costs the model.
    export_error: RetrainError | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def val_accuracy(self) -> float:
        return self.metrics["validation"]["accuracy"]

    @property
    def train_counts(self) -> dict[str, int]:
        return self.counts["train"]

    @property
    def val_counts(self) -> dict[str, int]:
        return self.counts["validation"]


@dataclasses.dataclass(frozen=True)
class _Trained:
    """The new layer after training, and what it says about every split."""
    fit: object                   # training.trainer.HeadResult: the head, its epoch and history
    scored: dict                  # split -> reports.writers.Scored (rows with features only)
    kept: dict[str, list[Example]]  # split -> the examples of those rows
    weighting: str                # the class weighting the loss used
    augment: dict | None          # the --augment report


def run(config: Config) -> Result:
    """Do what `python -m retrain` does: train a new layer on config.images, export it and report.

    Nothing is published before the run's reports and records are written: a run that fails at any
    step leaves no version under saved_model/ and removes its run folder.
    """
    clock = run_folder.Clock()
    gather.check_places({"--images": config.images, "--test-images": config.test_images},
                        {"--output": config.output_dir, "--tensorboard": config.tensorboard,
                         "--cache-dir": config.cache_dir, "--export-module": config.export_module})
    found = _read(config)
    version, run_dir = run_folder.reserve(config.output_dir)
    try:
        result = _run(config, clock, found, version, run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # a failed run leaves no half-written folder
        raise
    if result.export_error is not None:
        raise result.export_error
    if result.saved_model_dir is not None and not result.published:
        accuracy = result.metrics[result.focus]["accuracy"]
        raise RetrainError(f"--min-accuracy: {result.focus} accuracy {accuracy:.4f} is below {config.min_accuracy:g}; "
                           f"the model was not published (kept in {result.saved_model_dir} with the reports)",
                           exit_code=3)
    return result


def _run(config: Config, clock: run_folder.Clock, found: gather.Inputs, version: int, run_dir: Path) -> Result:
    labels, parts = found.labels, found.parts
    _write_scan(config, found, run_dir)
    if config.dry_run:
        counts = {name: _counts(labels, np.array([e.label for e in part])) for name, part in parts.items()}
        return Result(version=version, run_dir=run_dir, labels=labels, counts=counts, seconds=clock.lap("scan"),
                      skipped=found.skipped)
    clock.lap("scan")
    native.import_tensorflow()  # only now: input errors above print alone, without its start-up noise
    if config.fine_tune:
        distribute.make(config.strategy)  # first: collective ops are set up before any other TensorFlow work
    from retrain.backbone import resolve
    from retrain.features import extraction

    module = resolve.load_info(config.module)
    image_size = resolve.image_size_for(module, config.image_size)
    examples = [e for name in split.SPLITS for e in parts[name]]
    paths = [e.path for e in examples]
    digests = [e.digest for e in examples]  # read by the scan: no file is hashed twice
    with tempfile.TemporaryDirectory(prefix=".features-", dir=run_dir) as workdir:  # the matrix is scratch
        extractor = _extractor(config, module, image_size, Path(workdir))
        extraction.warm_up(extractor, paths, digests)  # the decoder gets ready while Keras and TF-Hub import
        from retrain.export import feature_module, saved_model
        from retrain.training import finetune

        source = extraction.source(extractor, paths, digests)
        clock.lap("features")
        data = examine.examine(parts, found.conflicts, labels, source, image_size, config.near_duplicate)
        trained = _train(config, extractor, labels, source, examples, parts)
        clock.lap("training")
        tuned = None
        if config.fine_tune:
            settings = finetune.FineTuneSettings(
                layers=config.fine_tune_layers, learning_rate=config.fine_tune_learning_rate,
                epochs=config.fine_tune_epochs, seed=config.seed, mixed_precision=config.mixed_precision)
            tuned = finetune.phase_two(extractor, trained.fit.head, trained.kept, dict(zip(paths, source.digests)),
                                       settings)
        adapted = feature_module.export_backbone(config.export_module, tuned, module.path, image_size, run_dir)
        if tuned is not None and tuned.kept:  # the backbone changed: its features, and so the scores, did too
            module = resolve.load_info(str(adapted))
            source = extraction.source(dataclasses.replace(extractor, module=module), paths, digests)
            trained = dataclasses.replace(trained, scored=_score(trained.fit.head, source, examples, parts)[0])
        if tuned is not None:
            clock.lap("fine-tune")
    judged = split.judged({name: len(s.y_true) for name, s in trained.scored.items()})
    scored = trained.scored[judged]
    accuracy = float(np.mean(scored.scores.argmax(1) == scored.y_true))
    published = config.min_accuracy is None or accuracy >= config.min_accuracy
    staged = _export(config, module, image_size, labels, trained.fit, run_dir / "saved_model",
                     trained.kept["validation"], {f"{judged}_accuracy": accuracy})
    lite, onnx, export_error = None, None, None
    try:
        lite = _tflite(config, staged, run_dir, image_size, trained.kept["train"], trained.kept[judged]) \
            if config.tflite else None
        onnx = _onnx(config, staged, run_dir, image_size, trained.kept[judged]) if config.onnx else None
    except RetrainError as e:  # the converted file failed, not the model: publish it, then say so
        export_error = e
    clock.lap("export")
    skips = _all_skips(config, found, examples, source, run_dir)
    result = Result(
        version=version, run_dir=run_dir, labels=labels, seconds=clock.seconds, skipped=skips,
        counts={name: _counts(labels, s.y_true) for name, s in trained.scored.items()},
        saved_model_dir=config.output_dir / "saved_model" / str(version) if published else staged,
        published=published, focus=judged, epochs=trained.fit.epoch, class_weight=trained.weighting, tflite=lite,
        onnx=onnx,
        features={"cached": source.cached, "extracted": source.extracted} if config.use_cache else None,
        fine_tune=finetune.report(tuned), augment=trained.augment, export_error=export_error, data=data)
    summaries, facts = run_folder.write_run_reports(
        result, model_dir=staged, module_name=config.module, image_size=image_size, scored=trained.scored,
        history=trained.fit.history, images_root=found.test_root if judged == "test" else Path(config.images),
        latency_paths=[e.path for e in trained.kept[judged][:LATENCY_IMAGES]], tensorboard_dir=config.tensorboard)
    result = dataclasses.replace(result, metrics=summaries, seconds=clock.lap("report"))
    run_folder.write_records(result, options=dataclasses.asdict(config), module=module, image_size=image_size,
                             facts=facts, digests=source.digests)
    write_server_config(config.output_dir)  # models.config, batching_parameters.txt: for TF Serving's docker run
    if published:  # last: TF Serving sees the version only once everything about it is written
        saved_model.promote(staged, result.saved_model_dir)
    return result


def _read(config: Config) -> gather.Inputs:
    """The scan and split of a run (and of `retrain check`)."""
    return gather.read(config.images, test_images=config.test_images, validation_split=config.validation_split,
                       test_split=config.test_split, max_pixels=config.max_pixels, strict=config.strict,
                       labels=config.labels)


def _write_scan(config: Config, found: gather.Inputs, run_dir: Path) -> None:
    """split.csv and skipped.csv of the scan, after checking that the cache folder takes writes."""
    if config.use_cache and not isinstance(config.feature_cache_dir, str):  # a URL is checked when opened
        run_folder.writable(config.feature_cache_dir, "--cache-dir")
    split.write_split_csv(run_dir / "split.csv", found.parts, found.labels)
    scan.write_skipped_csv(run_dir / "skipped.csv", found.skipped)


def _all_skips(config: Config, found: gather.Inputs, examples: list[Example], source, run_dir: Path) -> list:
    """The scan's skips and the files that did not decode at extraction (logged once each, as the scan's
    are); skipped.csv is written again when extraction added any."""
    skips = found.skipped + gather.relative(examples, source.skipped, Path(config.images))
    if source.skipped:
        scan.write_skipped_csv(run_dir / "skipped.csv", skips)
    return skips


def _extractor(config: Config, module, image_size: int, workdir: Path):
    """The extraction settings of a run (and of `retrain check`), its scratch matrix in workdir."""
    from retrain.features import extraction

    return extraction.Extractor(module=module, image_size=image_size, engine=config.engine,
                                batch_size=config.batch_size, max_pixels=config.max_pixels, workdir=workdir,
                                cache_dir=config.feature_cache_dir if config.use_cache else None)


def _train(config: Config, extractor, labels: list[str], source, examples: list[Example],
           parts: dict[str, list[Example]]) -> _Trained:
    """Train the head on the kept training rows (with --augment, also on their views, kept in the
    extractor's workdir) and score every split with it."""
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
    fit, augment = train(source, y, rows["train"]), None
    if config.augment:
        from retrain.training import augmented

        fit, augment = augmented.augmented_head(extractor, source, y, rows, [e.path for e in examples], fit, train,
                                                views=config.augment_views, seed=config.seed)
    scored, kept = _score(fit.head, source, examples, parts)
    return _Trained(fit=fit, scored=scored, kept=kept, weighting=weighting, augment=augment)


def _score(head, source, examples: list[Example], parts: dict[str, list[Example]]) -> tuple[dict, dict]:
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


def _export(config: Config, module, image_size: int, labels: list[str], fit, target: Path,
            warmups: list[Example], scores: dict) -> Path:
    """The classifier (frozen module + trained head + preprocessing) as a SavedModel at target."""
    from retrain.backbone import keras_models
    from retrain.export import saved_model

    log.info("exporting the SavedModel (takes seconds)")
    return saved_model.publish(
        keras_models.build_classifier(module.path, image_size, fit.head), target, labels=labels,
        image_size=image_size, max_pixels=config.max_pixels,
        warmup_images=[e.path.read_bytes() for e in warmups[:WARMUP_IMAGES]],
        info={"module_handle": config.module, "module_path": module.path, "module_fingerprint": module.fingerprint,
              "metrics": {"val_accuracy": float(fit.val_accuracy), "epochs": fit.epoch, **scores}})


def _tflite(config: Config, saved: Path, run_dir: Path, image_size: int, train: list[Example],
            judged: list[Example]) -> dict:
    """runs/N/model.tflite, checked against the SavedModel on the judged split (test, else validation)."""
    from retrain.export import tflite

    return tflite.export_checked(saved, run_dir, config.tflite, train_paths=[e.path for e in train],
                                 val_paths=[e.path for e in judged], val_labels=[e.label for e in judged],
                                 image_size=image_size, max_pixels=config.max_pixels, max_drop=config.max_export_drop)


def _onnx(config: Config, saved: Path, run_dir: Path, image_size: int, judged: list[Example]) -> dict:
    """runs/N/model.onnx, checked against the SavedModel on the judged split like the TFLite file."""
    from retrain.export import onnx_export

    return onnx_export.export_checked(saved, run_dir, val_paths=[e.path for e in judged],
                                      val_labels=[e.label for e in judged], image_size=image_size,
                                      max_pixels=config.max_pixels, max_drop=config.max_export_drop)


def _counts(labels: list[str], y: np.ndarray) -> dict[str, int]:
    return {name: int(np.sum(y == i)) for i, name in enumerate(labels)}


@dataclasses.dataclass(frozen=True)
class Checked:
    """What `retrain check` found: the data audit of the folder, written to run_dir like a run's."""
    version: int
    run_dir: Path                      # <output>/runs/N: data_issues.csv, report.html, metrics.json, split.csv
    data: examine.Audit
    counts: dict[str, dict[str, int]]  # split -> label -> images
    skipped: list[tuple[str, str]]
    seconds: dict[str, float]


def check(config: Config) -> Checked:
    """`retrain check`: the scan, split and feature cache of a run, then the data audit alone; no model."""
    clock = run_folder.Clock()
    gather.check_places({"--images": config.images, "--test-images": config.test_images},
                        {"--output": config.output_dir, "--cache-dir": config.cache_dir})
    found = _read(config)
    labels, parts = found.labels, found.parts
    version, run_dir = run_folder.reserve(config.output_dir)
    _write_scan(config, found, run_dir)
    clock.lap("scan")
    native.import_tensorflow()
    from retrain.backbone import resolve
    from retrain.features import extraction

    module = resolve.load_info(config.module)
    image_size = resolve.image_size_for(module, config.image_size)
    examples = [e for name in split.SPLITS for e in parts[name]]
    with tempfile.TemporaryDirectory(prefix=".features-", dir=run_dir) as workdir:
        source = extraction.source(_extractor(config, module, image_size, Path(workdir)), [e.path for e in examples],
                                   [e.digest for e in examples])
        clock.lap("features")
        data = examine.examine(parts, found.conflicts, labels, source, image_size, config.near_duplicate)
    skips = _all_skips(config, found, examples, source, run_dir)
    counts = {name: _counts(labels, np.array([e.label for e in part])) for name, part in parts.items()}
    seconds = clock.lap("check")
    run_folder.write_check(run_dir, data, images=config.images, module_name=config.module, counts=counts,
                           image_size=image_size, skipped=skips, seconds=seconds,
                           title=f"retrain check · run {version}")
    return Checked(version, run_dir, data, counts, skips, seconds)
