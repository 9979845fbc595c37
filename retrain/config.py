"""Every option of a run, its default and the reason for it; the CLI reads its defaults here."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from pathlib import Path

from retrain.errors import RetrainError

ENGINES = ("auto", "litert", "tf")
TFLITE_KINDS = ("float32", "float16", "int8", "uint8")  # uint8: full integer, uint8 in and out, batch 1
CLASS_WEIGHTS = ("auto", "balanced", "none")
ONNX_MODULES = ("tf2onnx", "onnx", "onnxruntime")  # what --onnx imports: the onnx extra


def missing_onnx_extra() -> None:
    """Raise RetrainError naming the extra to install unless every module of --onnx can be imported."""
    missing = [name for name in ONNX_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise RetrainError(f"--onnx: {', '.join(missing)} not installed; expected the onnx extra "
                           "(pip install 'retrain[onnx]')")


def cache_home() -> Path:
    """Root of retrain's caches: $RETRAIN_CACHE_HOME, else $XDG_CACHE_HOME/retrain, else ~/.cache/retrain."""
    if os.environ.get("RETRAIN_CACHE_HOME"):
        return Path(os.environ["RETRAIN_CACHE_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "retrain"


def module_home() -> Path:
    """Where built modules (the bundled default) and their LiteRT conversions live: $RETRAIN_MODULE_DIR,
    else <cache home>/modules. Kept apart from the feature cache so clearing features keeps modules."""
    if os.environ.get("RETRAIN_MODULE_DIR"):
        return Path(os.environ["RETRAIN_MODULE_DIR"]).expanduser()
    return cache_home() / "modules"


@dataclasses.dataclass(frozen=True)
class Config:
    # Folder with one sub-folder per class; the sorted folder names are the labels.
    images: Path | None = None
    # Name from `retrain modules`, TF-Hub/Kaggle handle, or local SavedModel: the bundled default works offline.
    module: str = "efficientnet_lite0"
    # Run folder; None means runs/<name of the images folder>, so each data set keeps its own history.
    output: Path | None = None
    # Upper bound on head epochs: early stopping on validation loss picks the real count.
    epochs: int = 200
    # Head batch size (and images per extraction batch); 64 keeps the 2-core CPU busy without swapping.
    batch_size: int = 64
    # Adam step size for the head: on frozen features 1e-3 converges in tens of epochs.
    learning_rate: float = 1e-3
    # Share of each class held out for validation (early stopping), by a stable hash of the file path.
    validation_split: float = 0.1
    # Share of each class held out as an untouched test set for the reports and the gate; 0 turns it off.
    test_split: float = 0.1
    # A separate labelled folder used as the test set instead of --test-split (same class names).
    test_images: Path | None = None
    # Square input side in pixels when the module does not fix one; None means the module's or 224.
    image_size: int | None = None
    # Seeds weight init, dropout and shuffling, so a rerun gives the same weights on the same machine.
    seed: int = 0
    # Dropout before the new layer: regularises a head trained on a few hundred images.
    dropout: float = 0.2
    # Epochs without a better validation loss before stopping (best weights are restored).
    patience: int = 10
    # Feature cache folder, local or any tf.io.gfile URL; None: <cache home>/features (content-addressed).
    cache_dir: str | Path | None = None
    # False runs the backbone on every image in every epoch, the old make_image_classifier way.
    use_cache: bool = True
    # Feature extraction engine: auto tries LiteRT (XNNPACK; 1.1x TensorFlow on 2 cores) and falls back to tf.
    engine: str = "auto"
    # Largest width x height accepted, in training and in the served graph: guards memory.
    max_pixels: int = 50_000_000
    # Also write runs/N/model.tflite of this kind (None: no TFLite file).
    tflite: str | None = None
    # Also write runs/N/model.onnx (needs the onnx extra: tf2onnx, onnx, onnxruntime).
    onnx: bool = False
    # Largest accuracy drop of the TFLite (and ONNX) file versus the SavedModel, in percentage points.
    max_export_drop: float = 1.0
    # Publish only when test accuracy (validation without a test set) reaches this, in [0, 1]; None: always.
    min_accuracy: float | None = None
    # Loss weights by inverse class frequency: auto uses them when the largest class is over 1.5x the smallest.
    class_weight: str = "auto"
    # Folder for TensorBoard scalars per epoch (each run adds a run-<n> folder); None writes none.
    tensorboard: Path | None = None
    # Also train a new layer on augmented views of the training images (never validation/test) and export the
    # one with the lowest validation loss of it, the plain one and their average. Off by default, since each
    # view costs a backbone pass per training image (once: views are cached).
    augment: bool = False
    # Views per training image with --augment: each epoch shows every image and one of its views (docs/benchmarks.md).
    augment_views: int = 4
    # Phase 2: the top of the backbone trains with the new layer at a low rate; kept only if validation loss drops.
    fine_tune: bool = False
    # Top blocks that phase 2 trains (the bundled module has 16); 5 was the only setting that gained here.
    fine_tune_layers: int = 5
    # Adam step of phase 2: 1e-5 never beat phase 1, 3e-5 gained 1.2 points, 1e-4 overfit (docs/benchmarks.md).
    fine_tune_learning_rate: float = 3e-5
    # Most phase-2 epochs; early stopping keeps the best one.
    fine_tune_epochs: int = 5
    # float16 compute in the fine-tuned blocks (mixed_float16 for GPUs; on a CPU only slower).
    mixed_precision: bool = False
    # tf.distribute strategy of phase 2: default (one process), mirrored (this machine's GPUs), multi-worker.
    strategy: str = "default"
    # Also write the backbone (fine-tuned when phase 2 kept it) as a TF-Hub feature-vector module here.
    export_module: Path | None = None
    # Any file the scan would skip is an error instead: for data sets that must be used whole.
    strict: bool = False
    # Scan, split and write split.csv and skipped.csv, then stop before any module loads.
    dry_run: bool = False

    def __post_init__(self) -> None:
        # Cross-field and range rules live here so the Python API checks what the CLI checks.
        self._check_finite()
        if not 0.0 < self.validation_split < 1.0:
            raise RetrainError(f"--validation-split: found {self.validation_split}, expected a number between 0 and 1")
        if not 0.0 <= self.test_split < 1.0 or self.validation_split + self.test_split >= 1.0:
            raise RetrainError(f"--test-split: found {self.test_split} with --validation-split "
                               f"{self.validation_split}, expected 0 <= test and validation + test < 1")
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise RetrainError(f"--min-accuracy: found {self.min_accuracy}, expected a number in [0, 1]")
        if self.class_weight not in CLASS_WEIGHTS:
            raise RetrainError(f"--class-weight: found {self.class_weight!r}, "
                               f"expected one of {', '.join(CLASS_WEIGHTS)}")
        if self.epochs < 1:
            raise RetrainError(f"--epochs: found {self.epochs}, expected at least 1")
        if self.batch_size < 1:
            raise RetrainError(f"--batch-size: found {self.batch_size}, expected at least 1")
        if self.learning_rate <= 0:
            raise RetrainError(f"--learning-rate: found {self.learning_rate}, expected a positive number")
        if self.image_size is not None and self.image_size < 8:
            raise RetrainError(f"--image-size: found {self.image_size}, expected at least 8 pixels")
        if not 0.0 <= self.dropout < 1.0:
            raise RetrainError(f"--dropout: found {self.dropout}, expected 0 <= dropout < 1")
        if self.engine not in ENGINES:
            raise RetrainError(f"--engine: found {self.engine!r}, expected one of {', '.join(ENGINES)}")
        if self.tflite is not None and self.tflite not in TFLITE_KINDS:
            raise RetrainError(f"--tflite: found {self.tflite!r}, expected one of {', '.join(TFLITE_KINDS)}")
        if self.onnx:  # before any work: a missing extra is found at once, not after training
            missing_onnx_extra()
        if self.augment_views < 1 or self.fine_tune_layers < 1 or self.fine_tune_epochs < 1:
            raise RetrainError("--augment-views, --fine-tune-layers, --fine-tune-epochs: expected at least 1")
        if self.export_module is not None and Path(self.export_module).exists():
            raise RetrainError(f"--export-module: {self.export_module} already exists; expected a new folder name")
        if self.max_pixels < 1:
            raise RetrainError(f"--max-pixels: found {self.max_pixels}, expected a positive number")

    def _check_finite(self) -> None:
        """nan passes every range test below (each comparison is False), inf most: refuse both first."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise RetrainError(f"--{field.name.replace('_', '-')}: found {value}, expected a finite number")
        if not 0 <= self.seed < 2**31:
            raise RetrainError(f"--seed: found {self.seed}, expected 0 <= seed < 2**31")

    @property
    def output_dir(self) -> Path:
        """The run folder: --output, else runs/<images folder name>."""
        if self.output is not None:
            return Path(self.output)
        if self.images is None:
            raise RetrainError("--images: missing, expected a folder with one sub-folder per class")
        return Path("runs") / Path(self.images).resolve().name

    @property
    def feature_cache_dir(self) -> str | Path:
        """--cache-dir as a Path, or as given when it is a URL (gs://...), which Path would mangle."""
        if self.cache_dir is None:
            return cache_home() / "features"
        return str(self.cache_dir) if "://" in str(self.cache_dir) else Path(self.cache_dir)
