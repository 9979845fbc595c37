"""The training options of the command line: flag -> (value rule, help text).

Data, not code: cli.py turns each rule into a click type (a tuple is a choice) and takes each default
from the Config field of the same name, so a new option is one line here and one field there.
Rules: flag (on/off), path, folder, text, int (INT_RANGE), count (1 to INT_RANGE's top), side (SIDE_RANGE
pixels), share ([0, 1)), open share ((0, 1)), fraction ([0, 1]), rate (> 0), points (>= 0); every number
is finite (nan and inf are refused with the usage error, exit 2).
"""
from __future__ import annotations

from retrain.config import CLASS_WEIGHTS, ENGINES, TFLITE_KINDS
from retrain.training.distribute import STRATEGIES

INT_RANGE = (0, 2**31 - 1)  # seeds and counts: what TensorFlow's int32 sizes and NumPy's seeds take
SIDE_RANGE = (8, 8192)  # --image-size in pixels: a larger square input is no sensible backbone's

TRAINING = {
    "--images": ("path", "Folder with one sub-folder of images per class."),
    "--module": ("text", "Module name (see `retrain modules`), TF-Hub/Kaggle handle or local SavedModel folder."),
    "--output": ("path", "Run folder [default: runs/<images folder name>]."),
    "--epochs": ("count", "Most epochs for the new layer; early stopping on validation loss picks the best."),
    "--batch-size": ("count", "Images per extraction batch and feature vectors per training step."),
    "--learning-rate": ("rate", "Adam learning rate for the new layer."),
    "--validation-split": ("open share", "Share of each class held out for validation (early stopping)."),
    "--test-split": ("share", "Share of each class held out as the test set of the reports; 0 turns it off."),
    "--test-images": ("path", "A separate labelled folder used as the test set instead of --test-split."),
    "--image-size": ("side", "Input side for modules of any size [default: the module's, else 224]."),
    "--seed": ("int", "Random seed; same seed, same weights."),
    "--dropout": ("share", "Dropout rate before the new layer."),
    "--patience": ("count", "Epochs without a better validation loss before training stops."),
    "--cache-dir": ("text", "Feature cache folder, local or gs://... [default: ~/.cache/retrain/features]."),
    "--engine": (ENGINES, "Backbone engine: auto is TensorFlow on a GPU, else LiteRT, else TensorFlow."),
    "--max-pixels": ("count", "Largest width x height accepted in training and by the served model."),
    "--tflite": (TFLITE_KINDS, "Also write runs/N/model.tflite of this kind, with metadata (labels, "
                               "normalisation) for MediaPipe; uint8: full integer, uint8 in and out, batch 1."),
    "--onnx": ("flag", "Also write runs/N/model.onnx (onnxruntime, onnxruntime-web); needs retrain[onnx]."),
    "--max-export-drop": ("points", "With --tflite or --onnx: largest accuracy drop in points (else exit 3)."),
    "--min-accuracy": ("fraction", "Exit 3 unpublished if test (else validation) accuracy is below it."),
    "--class-weight": (CLASS_WEIGHTS, "Weight the loss by inverse class frequency (auto: when the largest class "
                                      "is over 1.5x the smallest)."),
    "--tensorboard": ("folder", "Also write TensorBoard scalars per epoch into a new run-<n> folder here."),
    "--augment-views": ("count", "Augmented views per training image with --augment (flip, rotation up to 10 "
                                 "degrees, crop to 85-100% of the side, brightness +-0.1, contrast +-20%)."),
    "--fine-tune-layers": ("count", "Top blocks --fine-tune trains (the bundled module has 16; opaque modules "
                                    "train whole)."),
    "--fine-tune-learning-rate": ("rate", "Adam learning rate of --fine-tune."),
    "--fine-tune-epochs": ("count", "Most epochs of --fine-tune; early stopping keeps the best one."),
    "--augment": ("flag", "Also train a head on cached augmented views of each training image; export it, the plain "
                          "head or their average, whichever has the lowest validation loss."),
    "--fine-tune": ("flag", "Then train the top of the backbone with the new layer at a low rate (batch norm "
                            "frozen); kept only if validation loss drops."),
    "--strategy": (STRATEGIES, "tf.distribute for --fine-tune: mirrored uses this machine's GPUs, multi-worker "
                               "the workers in TF_CONFIG (each runs the command with its own --output)."),
    "--mixed-precision": ("flag", "float16 in the fine-tuned blocks (for GPUs; slower on a CPU)."),
    "--strict": ("flag", "Stop with an error if any file would be skipped."),
    "--dry-run": ("flag", "Scan and split, write split.csv and skipped.csv, then stop before any module loads."),
    "--export-module": ("path", "Also write the backbone (fine-tuned if --fine-tune kept it) as a TF-Hub "
                                "feature-vector module in this new folder, for --module in later runs."),
}
