"""The command line: options -> Config -> run(); the only module that imports click."""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from retrain import native, stop, summary
from retrain.config import CLASS_WEIGHTS, ENGINES, TFLITE_KINDS, Config
from retrain.errors import RetrainError, out_of_space
from retrain.version import __version__

D = Config()  # every default comes from the dataclass


def _setup_logging(verbose: int, quiet: bool) -> None:
    """retrain's own lines at INFO; -v adds TensorFlow's native and Python start-up lines; -vv debug; -q warnings."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    native.show(verbose > 0)
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose > 0 else logging.ERROR)


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
            click.echo("Stopped: nothing half-written was kept; features computed so far stay cached", err=True)
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


# (option, the state of the others that makes it mean nothing, why): refused rather than ignored.
_MEANINGLESS = (
    ("cache_dir", lambda p: p["no_cache"], "found it with --no-cache, which reads and writes no cache"),
    ("test_split", lambda p: p["test_images"] is not None, "found it with --test-images, which is the test set"),
    ("max_export_drop", lambda p: p["tflite"] is None, "found it without --tflite, whose accuracy drop it bounds"),
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
    for name, pointless, why in _MEANINGLESS:
        if _given(ctx, name) and pointless(ctx.params):
            raise click.UsageError(f"--{name.replace('_', '-')}: {why}; expected one of the two")


_PATH, _DIR = click.Path(path_type=Path), click.Path(file_okay=False, path_type=Path)
_POSITIVE, _SHARE = click.IntRange(min=1), click.FloatRange(0, 1, max_open=True)
# flag -> (type, help) of the training options; each default is the Config field of the same name.
TRAINING_OPTIONS = {
    "--images": (_PATH, "Folder with one sub-folder of images per class."),
    "--module": (str, "Module name (see `retrain modules`), TF-Hub/Kaggle handle or local SavedModel folder."),
    "--output": (_PATH, "Run folder [default: runs/<images folder name>]."),
    "--epochs": (_POSITIVE, "Most epochs for the new layer; early stopping on validation loss picks the best."),
    "--batch-size": (_POSITIVE, "Images per extraction batch and feature vectors per training step."),
    "--learning-rate": (click.FloatRange(min=0, min_open=True), "Adam learning rate for the new layer."),
    "--validation-split": (click.FloatRange(0, 1, min_open=True, max_open=True),
                           "Share of each class held out for validation (early stopping)."),
    "--test-split": (_SHARE, "Share of each class held out as the test set of the reports; 0 turns it off."),
    "--test-images": (_PATH, "A separate labelled folder used as the test set instead of --test-split."),
    "--image-size": (click.IntRange(min=8), "Input side for modules of any size [default: the module's, else 224]."),
    "--seed": (int, "Random seed; same seed, same weights."),
    "--dropout": (_SHARE, "Dropout rate before the new layer."),
    "--patience": (_POSITIVE, "Epochs without a better validation loss before training stops."),
    "--cache-dir": (_DIR, "Feature cache folder [default: ~/.cache/retrain/features]."),
    "--engine": (click.Choice(ENGINES), "Backbone engine: auto is TensorFlow on a GPU, else LiteRT, else TensorFlow."),
    "--max-pixels": (_POSITIVE, "Largest width x height accepted in training and by the served model."),
    "--tflite": (click.Choice(TFLITE_KINDS), "Also write runs/N/model.tflite of this kind."),
    "--max-export-drop": (click.FloatRange(min=0), "With --tflite: largest accuracy drop in points (else exit 3)."),
    "--min-accuracy": (click.FloatRange(0, 1), "Exit 3 unpublished if test (else validation) accuracy is below it."),
    "--class-weight": (click.Choice(CLASS_WEIGHTS), "Weight the loss by inverse class frequency (auto: when the "
                                                    "largest class is over 1.5x the smallest)."),
    "--tensorboard": (_DIR, "Also write TensorBoard scalars per epoch into a new run-<n> folder here."),
}


def _training_options(command):
    """Apply TRAINING_OPTIONS to a click command, defaults from Config."""
    for flag, (kind, text) in reversed(TRAINING_OPTIONS.items()):
        default = getattr(D, flag[2:].replace("-", "_"))
        command = click.option(flag, type=kind, default=default, show_default=default is not None, help=text)(command)
    return command


@click.group(cls=_Retrain, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_training_options
@click.option("--no-cache", is_flag=True, help="Run the backbone on every image in every epoch (the old, slow way).")
@click.option("--strict", is_flag=True, help="Stop with an error if any file would be skipped.")
@click.option("--dry-run", is_flag=True, help="Scan and split, write split.csv and skipped.csv, then stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout.")
@click.option("-v", "--verbose", count=True, help="-v: also TensorFlow's own start-up lines; -vv: debug.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the summary.")
@click.version_option(__version__, prog_name="retrain")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, no_cache: bool, as_json: bool, **options) -> None:
    """Train a new softmax layer on a frozen TF-Hub image feature vector and export it for TF Serving.

    \b
    python -m retrain --images data/cats        # data/cats/<label>/*.jpg
    python -m retrain modules                   # the modules it knows
    """
    _setup_logging(verbose, quiet)
    _refuse_ignored(ctx)
    if ctx.invoked_subcommand is not None:
        return
    if options["images"] is None:
        raise click.UsageError("Missing option '--images': a folder with one sub-folder per class.")
    config = Config(use_cache=not no_cache, **options)
    from retrain import pipeline  # imported here to keep --help fast

    result = pipeline.run(config)
    click.echo(json.dumps(summary.as_json(result)) if as_json else "\n".join(summary.as_lines(result)))


@main.command("modules")
def modules_command() -> None:
    """List the known module names with handle, input size, feature size and offline availability."""
    from retrain import catalog
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
    from retrain import predict
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
    from retrain.evaluate import evaluate
    result = evaluate(model, images, batch_size, output)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result)))
        return
    click.echo(f"accuracy: {result.accuracy:.4f} on {result.count} images")
    for label, accuracy in result.per_class.items():
        click.echo(f"  {label:<24} {accuracy:.3f}")
    click.echo(f"report: {Path(result.output) / 'report.html'}")
