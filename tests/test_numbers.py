"""Numbers at the boundary: every float and int option refuses nan, inf and out-of-range values with
click's usage error (exit 2); a training loss that stops being finite fails the run and publishes nothing."""
from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from fake_data import colour_set, write_images
from retrain import options
from retrain.cli import main
from retrain.config import Config
from retrain.errors import RetrainError

NUMERIC = sorted(flag for flag, (kind, _) in options.TRAINING.items()
                 if kind in ("int", "count", "side", "share", "open share", "fraction", "rate", "points"))
BAD = ["nan", "NaN", "inf", "-inf", "+Infinity", "1e400", "-1e400", str(2**70), str(-(2**70)), "-1"]
PREREQUISITES = {"--max-export-drop": ["--tflite", "float32"], "--augment-views": ["--augment"],
                 "--fine-tune-layers": ["--fine-tune"], "--fine-tune-learning-rate": ["--fine-tune"],
                 "--fine-tune-epochs": ["--fine-tune"]}


# A huge rate or drop is finite and in range (a loss it makes non-finite fails the run instead).
CASES = [(flag, value) for flag in NUMERIC for value in BAD
         if not (value == str(2**70) and options.TRAINING[flag][0] in ("rate", "points"))]


@pytest.mark.parametrize("flag, value", CASES)
def test_every_numeric_option_refuses_non_finite_and_out_of_range_values_with_a_usage_error(tmp_path, flag, value):
    result = CliRunner().invoke(main, ["--images", str(tmp_path), *PREREQUISITES.get(flag, []), flag, value])
    assert result.exit_code == 2, (flag, value, result.output)
    assert f"'{flag}'" in result.output and "Traceback" not in result.output, result.output


def test_a_seed_up_to_the_documented_top_is_accepted_by_the_config():
    assert Config(images=None, seed=2**31 - 1).seed == 2**31 - 1


@pytest.mark.parametrize("field, value", [("learning_rate", float("nan")), ("learning_rate", float("inf")),
                                          ("dropout", float("nan")), ("validation_split", float("nan")),
                                          ("test_split", float("nan")), ("min_accuracy", float("nan")),
                                          ("fine_tune_learning_rate", float("inf")), ("max_export_drop", float("nan")),
                                          ("seed", 2**70), ("seed", -1)])
def test_the_python_api_refuses_the_same_numbers_with_one_line(field, value):
    with pytest.raises(RetrainError, match=f"--{field.replace('_', '-')}: found"):
        Config(**{field: value})


def test_a_loss_that_becomes_nan_stops_training_with_one_line(tmp_path):
    from retrain.features import matrix
    from retrain.training import trainer

    features = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    features[5] = np.nan  # a backbone that answered nan for one image
    source = matrix.FeatureMatrix(*features.shape, tmp_path)
    source.put(np.arange(40), features)
    labels = np.arange(40, dtype=np.int32) % 2
    with pytest.raises(RetrainError, match=r"^training: loss nan.* at epoch 1 .*expected finite losses"):
        trainer.train_head(source, labels, np.arange(30), np.arange(30, 40), 2, dropout=0.0, learning_rate=0.01,
                           batch_size=8, epochs=5, patience=5, seed=0)


@pytest.mark.slow
def test_a_run_whose_loss_overflows_exits_1_and_publishes_nothing(tmp_path, fake_module):
    images = write_images(tmp_path / "images", colour_set(6))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--images", str(images), "--module", str(fake_module), "--output", str(out),
                                       "--image-size", "16", "--learning-rate", "1e38", "--epochs", "20"])
    assert result.exit_code == 1, result.output
    assert re.match(r"Error: training: (val_)?loss (nan|inf)", result.output.strip().splitlines()[-1]), result.output
    assert not any((out / "saved_model").iterdir())
