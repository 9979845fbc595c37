"""Phase 2: kept only when it lowers validation loss, batch norm never leaves inference mode, the frozen
bottom stays frozen, and mixed precision computes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fake_data import COLOURS
from retrain.backbone import keras_models, resolve
from retrain.training import finetune
from retrain.training.batches import array_batches
from retrain.training.finetune import FineTuneSettings


def colour_arrays(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 [3n, size, size, 3] jittered solid colours in [0, 1] and int32 labels [3n], one class per colour."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(COLOURS)), n).astype(np.int32)
    colours = np.array(list(COLOURS.values()), np.float32)[labels] / 255.0
    colours = np.clip(colours + rng.uniform(-0.05, 0.05, colours.shape), 0, 1).astype(np.float32)
    return np.broadcast_to(colours[:, None, None, :], (len(labels), size, size, 3)).copy(), labels


def sets(n: int = 6, seed: int = 0):
    x, y = colour_arrays(n, seed=seed)
    return array_batches(x[::2], y[::2], 4, seed=0), array_batches(x[1::2], y[1::2], 4)


def values(variables) -> list[np.ndarray]:
    return [v.numpy() for v in variables]


def test_phase_2_that_lowers_validation_loss_is_kept(fake_module, tmp_path):
    head = keras_models.build_head(8, 3, 0.0)
    train, val = sets()
    result = finetune.fine_tune(str(fake_module), 16, head, train, val, FineTuneSettings(learning_rate=1e-2, epochs=4),
                                workdir=tmp_path)
    assert result.kept and result.after[0] < result.before[0]
    assert result.trained_blocks is None  # an opaque module trains whole
    assert not np.allclose(result.backbone.projection.numpy(), load_projection(fake_module).numpy())


def load_projection(path):
    import tensorflow as tf

    return tf.saved_model.load(str(path)).projection


def test_phase_2_that_does_not_help_returns_phase_1_unchanged(fake_module, tmp_path):
    keras_models.set_seed(0)  # a head that starts right on the training labels, so every step away hurts validation
    head = keras_models.build_head(8, 3, 0.0)
    x, y = colour_arrays(6)
    head_before = values(head.weights)
    # Validation labels contradict the training labels, so every step on the training set hurts it.
    train = array_batches(x[::2], y[::2], 4, seed=0)
    val = array_batches(x[1::2], (y[1::2] + 1) % 3, 4)
    result = finetune.fine_tune(str(fake_module), 16, head, train, val,
                                FineTuneSettings(learning_rate=1e-1, epochs=3, patience=1), workdir=tmp_path)
    assert not result.kept and result.after == result.before
    assert all(np.array_equal(a, b) for a, b in zip(values(head.weights), head_before))
    assert np.array_equal(result.backbone.projection.numpy(), load_projection(fake_module).numpy())


def test_array_batches_cover_every_row_once_in_a_fresh_order():
    x, y = np.arange(10)[:, None], np.arange(10)
    batches = array_batches(x, y, 3, seed=0)
    first = [row for _, b in batches() for row in b]
    second = [row for _, b in batches() for row in b]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    assert [len(b) for _, b in array_batches(x, y, 3)()] == [3, 3, 3, 1]


@pytest.fixture(scope="module")
def lite0_path() -> str:
    return resolve.resolve("efficientnet_lite0")


@pytest.mark.slow
def test_lite0_top_blocks_train_with_batch_norm_in_inference_mode(lite0_path, tmp_path):
    x, y = colour_arrays(4, size=32)
    head = keras_models.build_head(1280, 3, 0.2)
    batches = array_batches(x, y, 4, seed=0)
    result = finetune.fine_tune(lite0_path, 32, head, batches, array_batches(x, y, 4),
                                FineTuneSettings(layers=2, learning_rate=1e-3, epochs=2, patience=2),
                                workdir=tmp_path)
    assert result.trained_blocks == 2 and result.kept
    from retrain.backbone import trainable

    original = trainable.load(lite0_path)
    tuned = result.backbone
    # The bottom is frozen, the top moved, and no moving statistic anywhere was touched.
    assert np.array_equal(tuned.blocks[13].project.kernel.numpy(), original.blocks[13].project.kernel.numpy())
    assert not np.array_equal(tuned.blocks[15].project.kernel.numpy(), original.blocks[15].project.kernel.numpy())
    for a, b in zip(tuned.variables, original.variables):
        if "moving" in a.name:
            assert np.array_equal(a.numpy(), b.numpy()), a.name


@pytest.mark.slow
def test_mixed_precision_trains_the_top_in_float16(lite0_path, tmp_path):
    x, y = colour_arrays(8, size=32)
    head = keras_models.build_head(1280, 3, 0.0)
    batches = array_batches(x, y, 2, seed=0)
    result = finetune.fine_tune(lite0_path, 32, head, batches, array_batches(x, y, 8),
                                FineTuneSettings(layers=1, learning_rate=1e-3, epochs=3, patience=3,
                                                 mixed_precision=True), workdir=tmp_path)
    assert np.isfinite(result.after[0]) and result.kept and result.after[0] < result.before[0]


def test_a_module_without_trainable_variables_is_refused(tmp_path):
    import tensorflow as tf

    from retrain.errors import RetrainError

    class Fixed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, axis=[1, 2])

    tf.saved_model.save(Fixed(), str(tmp_path / "fixed"))
    train, val = sets()
    with pytest.raises(RetrainError, match="trainable_variables"):
        finetune.fine_tune(str(tmp_path / "fixed"), 16, keras_models.build_head(3, 3, 0.0), train, val,
                           FineTuneSettings(), workdir=tmp_path)


@pytest.mark.slow
def test_the_whole_recipe_from_the_command_line(tmp_path, fake_module):
    """--augment and --fine-tune in one run, the backbone exported, then reused as --module on other data."""
    import json

    from click.testing import CliRunner

    from fake_data import colour_set, write_images
    from retrain.cli import main
    from retrain.reports.summary import AUGMENT_CHOICES

    def run(*args):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    b = write_images(tmp_path / "b", colour_set(n=10))
    summary = run("--images", b, "--module", fake_module, "--output", tmp_path / "out-b", "--image-size", 24,
                  "--epochs", 20, "--augment", "--augment-views", 2, "--fine-tune", "--fine-tune-epochs", 2,
                  "--export-module", tmp_path / "module-b", "--json")
    assert set(summary["fine_tune"]) >= {"kept", "before", "after", "epochs"}
    views = summary["augment"]
    assert views["views"] == 2 and set(views["val_loss"]) == {"without", "with", "average"}
    assert views["kept"] == min(views["val_loss"], key=views["val_loss"].get)
    page = (Path(summary["run"]) / "report.html").read_text()
    assert f"exported {AUGMENT_CHOICES[views['kept']]}" in page and "fine-tune" in page  # both in the facts
    assert (tmp_path / "module-b" / "saved_model.pb").is_file()
    # Shades, not copies: byte-identical files share a split, so eight copies could not be held out.
    a = write_images(tmp_path / "a", {"light": [(230 - i, 230, 230) for i in range(8)],
                                      "dark": [(20 + i, 20, 20) for i in range(8)]})
    reused = run("--images", a, "--module", tmp_path / "module-b", "--output", tmp_path / "out-a", "--image-size", 24,
                 "--epochs", 40, "--learning-rate", 0.05, "--json")
    assert reused["accuracy"]["test"] == 1.0
    assert reused["features"] == {"cached": 0, "extracted": 16}  # a module of its own: nothing cached under it


def test_views_mix_with_the_originals_in_every_chunk(tmp_path, monkeypatch):
    from retrain.features import matrix as matrices
    from retrain.features.views import WithViews

    class Source:  # what extraction.extract returns, reduced to what WithViews reads
        def __init__(self, matrix):
            self.matrix, self.kept, self.dim = matrix, np.ones(len(matrix), bool), matrix.dim

        def chunks(self, rows, size):
            return self.matrix.chunks(rows, size)

    def matrix(values):
        m = matrices.FeatureMatrix(len(values), 2, tmp_path)
        m.put(np.arange(len(values)), np.asarray(values, np.float32))
        return m

    monkeypatch.setattr(matrices, "MEMMAP_BYTES", 0)  # views on disk, as on a large set
    originals = matrix(np.arange(8).reshape(4, 2))
    views = WithViews(Source(originals), [matrix(np.full((4, 2), -1 - v)) for v in range(2)])
    assert views.views[0].path is not None
    (rows, x), (rows2, x2) = views.chunks(np.array([5, 0, 11, 3, 4, 1, 2, 8]), 4)
    assert sorted(rows.tolist()) == [0, 3, 5, 11] and sorted(rows2.tolist()) == [1, 2, 4, 8]
    for read, features in ((rows, x), (rows2, x2)):
        for row, feature in zip(read.tolist(), features):  # rows 4-7: view 0, rows 8-11: view 1
            assert feature.tolist() == ([2.0 * row, 2.0 * row + 1] if row < 4 else [-1.0 - (row - 4) // 4] * 2)


def test_augment_exports_the_head_with_the_lowest_validation_loss(tmp_path):
    from retrain.features.matrix import FeatureMatrix
    from retrain.training.augmented import choose
    from retrain.training.trainer import train_head

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300).astype(np.int32)
    matrix = FeatureMatrix(300, 8, None)
    matrix.put(np.arange(300), (np.eye(2, 8)[labels] * 4 + rng.normal(size=(300, 8))).astype(np.float32))

    def train(y):
        return train_head(matrix, y, np.arange(200), np.arange(200, 300), 2, dropout=0.0, learning_rate=0.05,
                          batch_size=32, epochs=20, patience=20, seed=0)

    right, wrong = train(labels), train(1 - labels)  # the wrong head is sure of the other class everywhere
    head, report = choose(right, wrong, matrix, labels, np.arange(200, 300), 4)
    assert report["kept"] == "without" and head.head is right.head and report["views"] == 4
    assert report["val_loss"]["without"] < report["val_loss"]["average"] < report["val_loss"]["with"]
    assert head.val_loss == report["val_loss"]["without"] and report["val_accuracy"]["without"] > 0.95
    head, report = choose(wrong, right, matrix, labels, np.arange(200, 300), 4)
    assert report["kept"] == "with" and head.head is right.head and head.history is right.history
