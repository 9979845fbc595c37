"""The command line: options -> Config -> run(); the only module that imports click."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import click

from retrain import __version__
from retrain.config import ENGINES, TFLITE_KINDS, Config
from retrain.errors import RetrainError

D = Config()  # every default comes from the dataclass


def _setup_logging(verbose: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep its C++ chatter down
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _fail(error: RetrainError) -> None:
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", type=click.Path(path_type=Path), help="Folder with one sub-folder of images per class.")
@click.option("--module", default=D.module, show_default=True,
              help="Module name (see `retrain modules`), TF-Hub/Kaggle handle or local SavedModel folder.")
@click.option("--output", type=click.Path(path_type=Path), help="Run folder [default: runs/<images folder name>].")
@click.option("--epochs", type=click.IntRange(min=1), default=D.epochs, show_default=True,
              help="Most epochs for the new layer; early stopping on validation loss picks the best.")
@click.option("--batch-size", type=click.IntRange(min=1), default=D.batch_size, show_default=True,
              help="Images per extraction batch and feature vectors per training step.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=D.learning_rate,
              show_default=True, help="Adam learning rate for the new layer.")
@click.option("--validation-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=D.validation_split, show_default=True, help="Share of each class held out for validation.")
@click.option("--image-size", type=click.IntRange(min=8), default=D.image_size,
              help="Input side in pixels for modules that accept any size [default: the module's, else 224].")
@click.option("--seed", type=int, default=D.seed, show_default=True, help="Random seed; same seed, same weights.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=D.dropout, show_default=True,
              help="Dropout rate before the new layer.")
@click.option("--patience", type=click.IntRange(min=1), default=D.patience, show_default=True,
              help="Epochs without a better validation loss before training stops.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Feature cache folder [default: ~/.cache/retrain/features].")
@click.option("--no-cache", is_flag=True, help="Run the backbone on every image in every epoch (the old, slow way).")
@click.option("--engine", type=click.Choice(ENGINES), default=D.engine, show_default=True,
              help="Feature extraction engine: auto tries LiteRT, falls back to TensorFlow.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=D.max_pixels, show_default=True,
              help="Largest width x height accepted in training and by the served model.")
@click.option("--tflite", type=click.Choice(TFLITE_KINDS), help="Also write runs/N/model.tflite of this kind.")
@click.option("--max-export-drop", type=click.FloatRange(min=0), default=D.max_export_drop, show_default=True,
              help="Largest TFLite accuracy drop in points before the run fails (exit 3).")
@click.option("-v", "--verbose", count=True, help="More log lines (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and the summary.")
@click.version_option(__version__, prog_name="retrain")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, no_cache: bool, **options) -> None:
    """Train a new softmax layer on a frozen TF-Hub image feature vector and export it for TF Serving.

    \b
    python -m retrain --images data/cats        # data/cats/<label>/*.jpg
    python -m retrain modules                   # the modules it knows
    """
    _setup_logging(-1 if quiet else verbose)
    if ctx.invoked_subcommand is not None:
        return
    if options["images"] is None:
        raise click.UsageError("Missing option '--images': a folder with one sub-folder per class.")
    try:
        config = Config(use_cache=not no_cache, **options)
        from retrain.train import run  # TensorFlow loads behind this import: keep --help fast
        result = run(config)
    except RetrainError as error:
        _fail(error)
    _print_summary(result)


def _print_summary(result) -> None:
    click.echo(f"classes ({len(result.labels)}): {', '.join(result.labels)}")
    click.echo(f"images: {sum(result.train_counts.values())} training, {sum(result.val_counts.values())} validation")
    click.echo(f"validation accuracy: {result.val_accuracy:.3f} (epoch {result.epochs})")
    click.echo(f"model: {result.saved_model_dir}")
    if result.tflite:
        click.echo(f"tflite ({result.tflite['kind']}): {result.run_dir / 'model.tflite'}, accuracy "
                   f"{result.tflite['tflite_accuracy']:.3f} vs {result.tflite['saved_model_accuracy']:.3f}")
    click.echo(f"labels and metrics: {result.run_dir}")


@main.command("modules")
def modules_command() -> None:
    """List the known module names with handle, input size, feature size and offline availability."""
    from retrain import modules
    rows = modules.catalog()
    width = max(len(r["name"]) for r in rows)
    click.echo(f"{'name':<{width}}  size  features  offline  handle")
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['image_size'] or 'any':>4}  {r['feature_dim'] or '?':>8}  "
                   f"{'yes' if r['offline'] else 'no':>7}  {r['handle']}")


@main.command("predict")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Labels shown per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout, nothing else.")
def predict_command(model: Path, images: tuple[Path, ...], top_k: int, as_json: bool) -> None:
    """Label IMAGES with MODEL: a run folder, its saved_model/ (newest version) or a saved_model/N/ folder.

    Exit code 0 when every image was answered, 1 when any failed (the others are still answered).
    """
    from retrain import predict
    try:
        results = predict.predict(model, list(images), top_k)
    except RetrainError as error:
        _fail(error)
    for r in results:
        if as_json:
            click.echo(json.dumps(r))
        elif "error" in r:
            click.echo(f"Error: {r['path']}: {r['error']}", err=True)
        else:
            best = "  ".join(f"{p['label']} {p['score']:.3f}" for p in r["predictions"])
            click.echo(f"{r['path']}: {best}")
    sys.exit(1 if any("error" in r for r in results) else 0)


@main.command("evaluate")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), required=True,
              help="Labelled test folder, one sub-folder per label (names must be the model's labels).")
@click.option("--batch-size", type=click.IntRange(min=1), default=D.batch_size, show_default=True,
              help="Images per call of the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def evaluate_command(model: Path, images: Path, batch_size: int, as_json: bool) -> None:
    """Accuracy of MODEL (run folder, saved_model/ or saved_model/N/) on a labelled image folder."""
    from retrain.evaluate import evaluate
    try:
        result = evaluate(model, images, batch_size)
    except RetrainError as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result)))
        return
    click.echo(f"accuracy: {result.accuracy:.4f} on {result.count} images")
    for label, accuracy in result.per_class.items():
        click.echo(f"  {label:<24} {accuracy:.3f}")


@main.command("extract", context_settings={"ignore_unknown_options": True})
@click.option("--images", required=True, help="Image folder, one sub-folder per class: local or any tf.io.gfile path.")
@click.option("--cache-dir", required=True,
              help="Feature cache folder shared by the workers: local, gs://, s3://... (any tf.io.gfile path).")
@click.option("--module", default=D.module, show_default=True,
              help="Module name (see `retrain modules`), TF-Hub/Kaggle handle or local SavedModel folder.")
@click.option("--runner", type=click.Choice(["direct", "dataflow", "flink", "spark"]), default="direct",
              show_default=True, help="Apache Beam runner; direct runs worker processes on this machine.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes (direct, default 2), Dataflow workers or Flink parallelism.")
@click.option("--image-size", type=click.IntRange(min=8), default=D.image_size,
              help="Input side in pixels for modules that accept any size [default: the module's, else 224].")
@click.option("--batch-size", type=click.IntRange(min=1), default=D.batch_size, show_default=True,
              help="Images per engine call on a worker.")
@click.option("--engine", type=click.Choice(ENGINES), default=D.engine, show_default=True,
              help="Engine on each worker: auto tries LiteRT, falls back to TensorFlow.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=D.max_pixels, show_default=True,
              help="Largest width x height decoded; larger files are skipped.")
@click.argument("pipeline_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def extract_command(ctx: click.Context, images: str, cache_dir: str, module: str, runner: str, workers: int | None,
                    image_size: int | None, batch_size: int, engine: str, max_pixels: int,
                    pipeline_args: tuple[str, ...]) -> None:
    """Fill the feature cache on Apache Beam; a later `retrain --cache-dir SAME` extracts nothing.

    \b
    python -m retrain extract --images data/fashion --cache-dir /tmp/features --workers 2
    python -m retrain extract --images gs://b/images --cache-dir gs://b/features --runner dataflow \\
        -- --project P --region R --temp_location gs://b/tmp --extra_package dist/retrain-0.1.0-py3-none-any.whl
    """
    try:
        from retrain import beam
        if ctx.parent.params.get("verbose", 0) < 2:  # Beam's own INFO lines (and workers' echoed through it)
            logging.getLogger("apache_beam").setLevel(logging.WARNING)
        result = beam.extract(images, cache_dir, module, runner=runner, workers=workers, image_size=image_size,
                              batch_size=batch_size, engine=engine, max_pixels=max_pixels,
                              pipeline_args=list(pipeline_args))
    except ModuleNotFoundError as error:
        if error.name != "apache_beam":  # e.g. the runner's own extra (apache-beam[gcp] for Dataflow)
            raise
        click.echo('Error: extract: Apache Beam is not installed; expected `pip install "retrain[beam]"`', err=True)
        sys.exit(1)
    except RetrainError as error:  # handled here, so the command needs nothing else from this file
        click.echo(f"Error: {error}", err=True)
        sys.exit(error.exit_code)
    click.echo(f"files: {result['listed']}, cached: {result['cached']}, duplicates: {result['duplicates']}, "
               f"extracted: {result['extracted']}, skipped: {result['skipped']}"
               + (" (files that do not decode, listed above)" if result["skipped"] else ""))
    click.echo(f"cache: {result['namespace']} ({result['entries']} entries)")
