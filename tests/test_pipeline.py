"""End to end through the Python API with the fake module: learn colours, fail on random labels."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import retrain
from fake_data import random_label_set, write_images
from retrain.config import Config


def train(images: Path, module: Path, out: Path, **overrides) -> retrain.Result:
    # 32-pixel inputs: the fake module takes any size, and small images keep the tests fast.
    options = dict(images=images, module=str(module), output=out, epochs=60, patience=15, image_size=32)
    return retrain.run(Config(**(options | overrides)))


def test_colours_are_learnt(colour_images, fake_module, tmp_path):
    result = train(colour_images, fake_module, tmp_path / "out")
    assert result.val_accuracy >= 0.9
    assert result.labels == ["blue", "green", "red"]
    assert sum(result.val_counts.values()) >= 3 and all(result.train_counts.values())
    assert (result.run_dir / "metrics.json").is_file()


def test_random_labels_are_not(fake_module, tmp_path):
    images = write_images(tmp_path / "random", random_label_set(n=30))
    assert train(images, fake_module, tmp_path / "out").val_accuracy < 0.7


def test_a_run_that_fails_while_reporting_publishes_nothing(colour_images, fake_module, tmp_path, monkeypatch):
    """The version appears in saved_model/ only after every report and record is written."""
    from retrain.reports import plots

    out = tmp_path / "out"
    first = train(colour_images, fake_module, out, epochs=5)
    assert first.published and (out / "saved_model" / "1" / "saved_model.pb").is_file()

    def broken(*args, **kwargs):
        raise RuntimeError("the plot failed")
    monkeypatch.setattr(plots, "confusion_png", broken)
    with pytest.raises(RuntimeError, match="the plot failed"):
        train(colour_images, fake_module, out, epochs=5)
    assert sorted(p.name for p in (out / "saved_model").iterdir()) == ["1"], "a failed run published a version"
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["1"], "a failed run left its run folder"
    monkeypatch.undo()
    assert train(colour_images, fake_module, out, epochs=5).version == 2  # and the number is free again


@pytest.mark.slow
def test_without_cache_the_backbone_trains_in_the_loop(colour_images, fake_module, tmp_path):
    result = train(colour_images, fake_module, tmp_path / "out", use_cache=False, epochs=10, learning_rate=0.05)
    assert result.val_accuracy >= 0.9
    assert (result.saved_model_dir / "saved_model.pb").is_file()


def test_only_the_new_layer_trains(fake_module):
    from retrain.backbone import keras_models
    head = keras_models.build_head(8, 3, 0.2)
    classifier = keras_models.build_classifier(str(fake_module), 32, head)
    assert [w.name for w in classifier.trainable_weights] == [w.name for w in head.trainable_weights]
    assert {w.name.split("/")[-1].split(":")[0] for w in classifier.trainable_weights} == {"kernel", "bias"}
    assert len(classifier.non_trainable_weights) == 2  # the module's own variables, frozen


def _scores(saved_model_dir: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf
    serve = tf.saved_model.load(str(saved_model_dir)).signatures["serving_images"]
    return serve(images=tf.constant(images))["scores"].numpy()


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights(colour_images, fake_module, tmp_path):
    probe = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    a = _scores(train(colour_images, fake_module, tmp_path / "a", seed=3).saved_model_dir, probe)
    b = _scores(train(colour_images, fake_module, tmp_path / "b", seed=3).saved_model_dir, probe)
    c = _scores(train(colour_images, fake_module, tmp_path / "c", seed=4).saved_model_dir, probe)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
def test_export_runs_in_a_process_with_only_tensorflow(colour_images, fake_module, tmp_path):
    saved = train(colour_images, fake_module, tmp_path / "out").saved_model_dir
    png = next((colour_images / "red").iterdir())
    script = textwrap.dedent(f"""
        import sys, tensorflow as tf
        serve = tf.saved_model.load({str(saved)!r}).signatures["serving_default"]
        out = serve(image_bytes=tf.constant([open({str(png)!r}, "rb").read()]))
        labels = [c.decode() for c in out["classes"].numpy()[0]]
        print(labels[int(out["scores"].numpy()[0].argmax())])
        assert not any(m in sys.modules for m in ("tf_keras", "tensorflow_hub")), "extra imports"
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "red"


@pytest.mark.slow
def test_features_are_reused_from_the_cache(colour_images, fake_module, tmp_path, monkeypatch):
    from retrain.backbone import engines

    cache = tmp_path / "cache"
    first = train(colour_images, fake_module, tmp_path / "a", cache_dir=cache)

    def fail(*args, **kwargs):
        raise AssertionError("the backbone ran although every feature should come from the cache")
    monkeypatch.setattr(engines, "open_engine", fail)
    again = train(colour_images, fake_module, tmp_path / "b", cache_dir=cache)
    assert again.val_accuracy == first.val_accuracy


@pytest.mark.slow
@pytest.mark.parametrize("split", [0.2, 0.5])
def test_run_records_the_split(colour_images, fake_module, tmp_path, split):
    result = train(colour_images, fake_module, tmp_path / "out", validation_split=split)
    assert sum(n for counts in result.counts.values() for n in counts.values()) == 36


@pytest.mark.slow
@pytest.mark.parametrize("engine, atol", [("tf", 1e-5), ("litert", 1e-4)])
def test_export_scores_equal_the_head_on_cached_features(colour_images, fake_module, tmp_path, engine, atol):
    """The exported model (module + head + decoding) answers what the trained head said on the features."""
    import tensorflow as tf

    from retrain.backbone import resolve
    from retrain.features import extraction
    from retrain.images import preprocess
    from retrain.inputs import scan

    cache = tmp_path / "cache"
    result = train(colour_images, fake_module, tmp_path / "out", engine=engine, cache_dir=cache)
    loaded = tf.saved_model.load(str(result.saved_model_dir))
    # The export names variables by position; the head's are the only [8, 3] and [3] ones.
    reader = tf.train.load_checkpoint(str(result.saved_model_dir / "variables" / "variables"))
    by_shape = {tuple(shape): name for name, shape in reader.get_variable_to_shape_map().items()}
    kernel, bias = reader.get_tensor(by_shape[(8, 3)]), reader.get_tensor(by_shape[(3,)])
    paths = [e.path for e in scan.scan(colour_images, 10**8).examples]
    extracted = extraction.extract(extraction.Extractor(
        module=resolve.load_info(str(fake_module)), image_size=32, engine=engine, cache_dir=cache, batch_size=16,
        max_pixels=10**6, workdir=tmp_path / "work"), paths)
    head_scores = tf.nn.softmax(extracted.matrix.read(np.arange(len(paths))) @ kernel + bias).numpy()
    images = preprocess.decode_batch(tf.constant([p.read_bytes() for p in paths]), 32, 10**6)
    served = loaded.signatures["serving_images"](images=images)["scores"].numpy()
    np.testing.assert_allclose(served, head_scores, atol=atol)
    assert (served.argmax(1) == head_scores.argmax(1)).all()


ODD_LABELS = [" spaced out ", "ünïcødé 猫", 'quo"te\'s', "-dash", "comma, semi; colon:", "x" * 200]


@pytest.mark.slow
def test_odd_labels_survive_labels_txt_the_export_and_the_served_output(fake_module, tmp_path):
    import tensorflow as tf

    colours = [(220, 30, 30), (30, 200, 40), (20, 40, 230), (230, 230, 30), (30, 230, 230), (200, 30, 200)]
    images = write_images(tmp_path / "imgs", {label: [rgb] * 6 for label, rgb in zip(ODD_LABELS, colours)})
    result = train(images, fake_module, tmp_path / "out", epochs=80, learning_rate=0.05)
    assert result.labels == sorted(ODD_LABELS)
    assert (result.run_dir / "labels.txt").read_text("utf-8").splitlines() == sorted(ODD_LABELS)
    assert (result.saved_model_dir / "assets.extra" / "labels.txt").read_text("utf-8").splitlines() == result.labels
    serve = tf.saved_model.load(str(result.saved_model_dir)).signatures["serving_default"]
    for label in ODD_LABELS:
        out = serve(image_bytes=tf.constant([next((images / label).iterdir()).read_bytes()]))
        classes = [c.decode("utf-8") for c in out["classes"].numpy()[0]]
        assert classes == result.labels and classes[int(out["scores"].numpy()[0].argmax())] == label
