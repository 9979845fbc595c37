"""The command line: options -> Config -> run(); the only module that imports click."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from retrain import native, options, stop
from retrain.config import Config
from retrain.errors import RetrainError, out_of_space
from retrain.reports import summary
from retrain.version import __version__

D = Config()  # every default comes from the dataclass


def _setup_logging(verbose: int, quiet: bool) -> None:
    """retrain's own lines at INFO; -v adds TensorFlow's native and Python start-up lines and tf2onnx's;
    -vv debug; -q warnings."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    # tf2onnx's INFO lines ("Using opset", "After optimization: Const -80 ...") are its internals, like
    # TensorFlow's own: shown with -v.
    logging.getLogger("tf2onnx").setLevel(logging.NOTSET if verbose else logging.WARNING)
    native.show(verbose > 0)


class _Retrain(click.Group):
    """The command group: an error the user can fix is one line on stderr and its exit code, no traceback;
    Ctrl-C and SIGTERM end the run cleanly with 130 and 143, as shells report signals."""

    def invoke(self, ctx: click.Context):
        stop.install()
        try:
            return super().invoke(ctx)
        except RetrainError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)
        except stop.Stopped as stopped:
            click.echo("Stopped: nothing half-written was kept (features already cached stay cached)", err=True)
            ctx.exit(stopped.exit_code)
        except Exception as error:  # a full disk is the user's to fix; anything else is our bug
            line = out_of_space(error)
            if line is None:
                raise
            click.echo(f"Error: {line}", err=True)
            ctx.exit(1)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set an option (on the command line or through the environment)."""
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


# (option, the state of the others that makes it mean nothing, found, expected): refused rather than ignored.
_MEANINGLESS = (
    ("cache_dir", lambda p: p["no_cache"], "with --no-cache, which reads and writes no cache", "one of the two"),
    ("test_split", lambda p: p["test_images"] is not None, "with --test-images, the test set", "one of the two"),
    ("max_export_drop", lambda p: p["tflite"] is None and not p["onnx"], "without --tflite or --onnx, whose drop it "
     "bounds", "--tflite KIND or --onnx too"),
    ("augment", lambda p: p["no_cache"], "with --no-cache; views are computed once and cached", "one of the two"),
    ("augment_views", lambda p: not p["augment"], "without --augment, whose views it counts", "--augment too"),
    *((name, lambda p: not p["fine_tune"], "without --fine-tune, which it sets", "--fine-tune too")
      for name in ("fine_tune_layers", "fine_tune_learning_rate", "fine_tune_epochs", "mixed_precision", "strategy")),
)


def _refuse_ignored(ctx: click.Context) -> None:
    """Options that would be silently ignored are usage errors (exit 2), never dropped."""
    if ctx.invoked_subcommand is not None:
        given = sorted(p.opts[0] for p in ctx.command.params if p.name not in ("verbose", "quiet")
                       and isinstance(p, click.Option) and _given(ctx, p.name))
        if given:
            raise click.UsageError(f"{', '.join(given)} train a model and mean nothing to "
                                   f"`{ctx.invoked_subcommand}`; put them without a command, or drop them")
        return
    for name, pointless, found, expected in _MEANINGLESS:
        if _given(ctx, name) and pointless(ctx.params):
            raise click.UsageError(f"--{name.replace('_', '-')}: found it {found}; expected {expected}")


class _Finite(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (a range check lets nan through: every comparison is False)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


# Value rules of retrain.options, as click types (click checks ranges and choices at the boundary).
_KINDS = {"path": click.Path(path_type=Path), "folder": click.Path(file_okay=False, path_type=Path), "text": str,
          "int": click.IntRange(*options.INT_RANGE), "count": click.IntRange(1, options.INT_RANGE[1]),
          "side": click.IntRange(*options.SIDE_RANGE),
          "share": _Finite(0, 1, max_open=True), "fraction": _Finite(0, 1),
          "open share": _Finite(0, 1, min_open=True, max_open=True),
          "rate": _Finite(min=0, min_open=True), "points": _Finite(min=0)}


def _training_options(*flags: str):
    """A decorator adding retrain.options.TRAINING (all, or those named) to a command, defaults from Config."""
    def apply(command):
        for flag in reversed(flags or tuple(options.TRAINING)):
            kind, text = options.TRAINING[flag]
            if kind == "flag":
                command = click.option(flag, is_flag=True, help=text)(command)
                continue
            default = getattr(D, flag[2:].replace("-", "_"))
            kind = click.Choice(kind) if isinstance(kind, tuple) else _KINDS[kind]
            command = click.option(flag, type=kind, default=default, show_default=default is not None,
                                   help=text)(command)
        return command
    return apply


@click.group(cls=_Retrain, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_training_options()
@click.option("--no-cache", is_flag=True, help="Run the backbone on every image in every epoch (the old, slow way).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout.")
@click.option("-v", "--verbose", count=True, help="-v: also TensorFlow's own start-up lines; -vv: debug.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the summary.")
@click.version_option(__version__, prog_name="retrain")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, no_cache: bool, as_json: bool, **given) -> None:
    """Train a new softmax layer on a frozen TF-Hub image feature vector and export it for TF Serving.

    \b
    python -m retrain --images data/cats        # data/cats/<label>/*.jpg
    python -m retrain modules                   # the modules it knows
    """
    _setup_logging(verbose, quiet)
    _refuse_ignored(ctx)
    if ctx.invoked_subcommand is not None:
        return
    if given["images"] is None:
        raise click.UsageError("Missing option '--images': a folder with one sub-folder per class.")
    config = Config(use_cache=not no_cache, **given)
    from retrain import pipeline  # imported here to keep --help fast

    result = pipeline.run(config)
    click.echo(json.dumps(summary.as_json(result)) if as_json else "\n".join(summary.as_lines(result)))


@main.command("modules")
def modules_command() -> None:
    """List the known module names with handle, input size, feature size and offline availability."""
    from retrain.backbone import catalog
    click.echo("\n".join(catalog.table()))


@main.command("predict")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Labels shown per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout, nothing else.")
def predict_command(model: Path, images: tuple[Path, ...], top_k: int, as_json: bool) -> None:
    """Label IMAGES with MODEL: a run folder, its saved_model/ (newest version) or a saved_model/N/ folder.

    Exit code 0 when every image was answered, 1 when any failed (the others are still answered).
    """
    native.import_tensorflow()
    from retrain.export import predict
    results = predict.predict(model, list(images), top_k)
    for r in results:  # a file that failed goes to stderr as an error line, unless everything is JSON
        click.echo(json.dumps(r) if as_json else summary.prediction_line(r), err="error" in r and not as_json)
    sys.exit(1 if any("error" in r for r in results) else 0)


@main.command("evaluate")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), required=True,
              help="Labelled test folder, one sub-folder per label (names must be the model's labels).")
@click.option("--batch-size", type=click.IntRange(min=1), default=D.batch_size, show_default=True,
              help="Images per call of the model.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.json and report.html [default: runs/N/eval-<images folder name>].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def evaluate_command(model: Path, images: Path, batch_size: int, output: Path | None, as_json: bool) -> None:
    """Accuracy of MODEL (run folder, saved_model/ or saved_model/N/) on a labelled image folder, with reports."""
    from retrain.export.evaluate import evaluate
    result = evaluate(model, images, batch_size, output)
    click.echo(json.dumps(dataclasses.asdict(result)) if as_json else "\n".join(summary.evaluation_lines(result)))


@main.command("check")
@_training_options("--images", "--labels", "--output", "--cache-dir", "--module", "--image-size", "--validation-split",
                   "--test-split", "--test-images", "--near-duplicate", "--engine", "--batch-size", "--max-pixels",
                   "--strict")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object on stdout.")
def check_command(as_json: bool, **given) -> None:
    """Check a labelled folder without training: exact and near duplicates, leaks between splits, likely
    label errors, outliers, small images and class balance, in runs/N/data_issues.csv and report.html.

    \b
    python -m retrain check --images data/fashion
    """
    if given["images"] is None:
        raise click.UsageError("Missing option '--images': a folder with one sub-folder per class.")
    from retrain import pipeline

    found = pipeline.check(Config(**given))
    if as_json:
        click.echo(json.dumps({"run": str(found.run_dir), "data": found.data.counts, "balance": found.data.balance,
                               "counts": found.counts, "skipped": len(found.skipped), "seconds": found.seconds}))
    else:
        click.echo("\n".join(summary.check_lines(found)))


@main.command("extract", context_settings={"ignore_unknown_options": True})
@click.option("--images", required=True, help="Image folder, one sub-folder per class: local or any tf.io.gfile path.")
@click.option("--cache-dir", required=True, help="Feature cache shared by the workers: local, gs://, s3://...")
@click.option("--runner", type=click.Choice(["direct", "dataflow", "flink", "spark"]), default="direct",
              show_default=True, help="Apache Beam runner; direct runs worker processes on this machine.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (direct, default 2), Dataflow "
                                                            "workers or Flink parallelism.")
@_training_options("--module", "--image-size", "--batch-size", "--engine", "--max-pixels")
@click.argument("pipeline_args", nargs=-1, type=click.UNPROCESSED)
def extract_command(pipeline_args: tuple[str, ...], **given) -> None:
    """Fill the feature cache on Apache Beam; a later `retrain --cache-dir SAME` extracts nothing.

    \b
    python -m retrain extract --images data/fashion --cache-dir /tmp/features --workers 2
    python -m retrain extract --images gs://b/images --cache-dir gs://b/features --runner dataflow \\
        -- --project P --region R --temp_location gs://b/tmp --extra_package dist/retrain-0.1.0-py3-none-any.whl
    """
    try:
        from retrain.beam import launch
    except ImportError as error:
        if error.name != "apache_beam":  # a runner's own extra (apache-beam[gcp]) names itself
            raise
        raise RetrainError('extract: Apache Beam is not installed; expected `pip install "retrain[beam]"`') from None

    click.echo(summary.extraction_line(launch.extract(pipeline_args=list(pipeline_args), **given)))


@main.command("serve")
@click.argument("model_base", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8501, show_default=True,
              help="TCP port (TF Serving's REST port); 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets other machines in (there is no authentication).")
@click.option("--name", default="model", show_default=True, help="Model name in the URLs: /v1/models/NAME:predict.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=64, show_default=True,
              help="Largest request body; a larger one is answered HTTP 413.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=D.max_pixels, show_default=True,
              help="Largest width x height of an image in a request (read from its header, before decoding).")
@click.option("-v", "--verbose", count=True, help="One log line per request.")
@click.pass_context
def serve_command(ctx: click.Context, model_base: Path, port: int, host: str, name: str, max_body_mb: float,
                  max_pixels: int, verbose: int) -> None:
    """Serve MODEL_BASE (a saved_model/ folder, or a run's output folder) with TF Serving's REST API.

    \b
    The newest version answers by default; new versions are picked up while serving. Open the printed
    URL to drop images on a page; clients use http://HOST:PORT/v1/models/NAME:predict as with TF Serving.
    """
    try:
        import httptools  # noqa: F401
        import pybase64  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise RetrainError(f'serve: {error.name} is not installed; expected `pip install "retrain[serve]"`') from None
    from retrain.serve import server

    base = server.find_base(model_base)  # before TensorFlow's start-up lines, so an error stands alone
    native.import_tensorflow()
    from retrain.serve.app import Limits

    def ready(url: str, store) -> None:
        click.echo(f"serving model {name!r} from {store.base} at {url} (Ctrl-C stops)", err=True)
        click.echo(url)  # alone on stdout, for scripts

    limits = Limits(max_body_bytes=int(max_body_mb * 2**20), max_pixels=max_pixels,
                    log_requests=verbose > 0 or ctx.find_root().params.get("verbose", 0) > 0)
    server.serve(base, name=name, host=host, port=port, limits=limits, on_ready=ready)
    try:
        stop.check()
    except stop.Stopped as stopped:
        click.echo("stopped serving", err=True)
        sys.exit(stopped.exit_code)
