"""Export: atomic versioned layout, assets.extra, in-process signature behaviour and TFLite.

The contract points that must hold in a bare TensorFlow process are in test_serving_contract.py.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from retrain import fs
from retrain.errors import RetrainError
from retrain.export import saved_model
from retrain.export.saved_model import export_saved_model
from retrain.export.tflite import export_tflite, tflite_scores
from serving_fixture import IMAGE_SIZE, LABELS, MAX_PIXELS, solid_images


def numeric_dirs(base):
    return sorted(p.name for p in base.iterdir() if re.fullmatch(r"[0-9]+", p.name))


def export_kwargs(serving_export, base_dir, version, **overrides):
    kwargs = dict(labels=LABELS, image_size=IMAGE_SIZE, base_dir=base_dir, version=version, info={},
                  max_pixels=MAX_PIXELS, warmup_images=[serving_export.samples["jpeg"]])
    return {**kwargs, **overrides}


@pytest.fixture(scope="module")
def loaded(serving_export):
    return tf.saved_model.load(str(serving_export.version_dir))


def test_layout_is_a_numeric_version_with_everything_in_place(serving_export):
    version_dir = serving_export.version_dir
    assert version_dir.name == "1" and version_dir.parent.name == "saved_model"
    assert (version_dir / "variables" / "variables.index").is_file()
    assert sorted(p.name for p in (version_dir / "assets.extra").iterdir()) == [
        "export_info.json", "labels.txt", "tf_serving_warmup_requests"]
    assert sorted(p.name for p in version_dir.parent.iterdir()) == ["1"], "staging folder left behind"


def test_export_info_merges_the_callers_facts(serving_export, fake_module):
    info = json.loads((serving_export.version_dir / "assets.extra" / "export_info.json").read_text("utf-8"))
    assert info["tensorflow_version"] == tf.__version__ and info["serve_with"] == f"TF Serving >= {tf.__version__}"
    assert info["module_handle"] == str(fake_module)
    assert info["labels"] == LABELS and info["image_size"] == IMAGE_SIZE and info["max_pixels"] == MAX_PIXELS
    assert info["metrics"] == {"val_accuracy": 0.91} and info["run"] == 1


def test_existing_version_is_never_overwritten(serving_export):
    before = sorted(p.name for p in serving_export.version_dir.rglob("*"))
    with pytest.raises(RetrainError, match="existing .*expected a new version number"):
        base = serving_export.version_dir.parent
        export_saved_model(serving_export.model, **export_kwargs(serving_export, base, 1))
    assert sorted(p.name for p in serving_export.version_dir.rglob("*")) == before


@pytest.mark.parametrize("version", [-1, "2", True, 2.0])
def test_version_must_be_a_non_negative_integer(serving_export, tmp_path, version):
    with pytest.raises(RetrainError, match="export version"):
        export_saved_model(serving_export.model, **export_kwargs(serving_export, tmp_path, version))


@pytest.mark.parametrize("labels", [[], ["a", "a", "b"], ["a", "b\nc"], ["", "b"]])
def test_labels_must_be_distinct_and_present(serving_export, tmp_path, labels):
    with pytest.raises(RetrainError, match="labels"):
        export_saved_model(serving_export.model, **export_kwargs(serving_export, tmp_path, 1, labels=labels))


def half_save(obj, export_dir, signatures=None):
    """tf.saved_model.save dying after saved_model.pb and before the variables."""
    os.makedirs(export_dir, exist_ok=True)
    with open(os.path.join(export_dir, "saved_model.pb"), "wb") as handle:
        handle.write(b"partial")
    raise KeyboardInterrupt("killed mid-save")


def test_a_crash_midway_leaves_no_numeric_folder(serving_export, tmp_path, monkeypatch):
    monkeypatch.setattr(saved_model.tf.saved_model, "save", half_save)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(serving_export.model, **export_kwargs(serving_export, tmp_path, 3))
    assert list(tmp_path.iterdir()) == [], "the staging folder was not cleaned up"


@pytest.mark.slow
def test_a_hard_kill_leaves_only_a_non_numeric_staging_folder(serving_export, tmp_path, monkeypatch):
    """With no chance to clean up (SIGKILL), the leftover is invisible to TF Serving and harmless."""
    monkeypatch.setattr(saved_model.tf.saved_model, "save", half_save)
    monkeypatch.setattr(fs.shutil, "rmtree", lambda *args, **kwargs: None)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(serving_export.model, **export_kwargs(serving_export, tmp_path, 4))
    (left,) = tmp_path.iterdir()
    assert numeric_dirs(tmp_path) == [] and left.name.startswith(f".tmp-{os.getpid()}-") and left.name.endswith("-4")


def test_second_export_is_a_higher_sibling_with_a_fallback_warmup(serving_export, tmp_path, caplog):
    base = tmp_path / "saved_model"
    shutil.copytree(serving_export.version_dir, base / "1")
    (base / ".tmp-2-99999").mkdir()  # a stale staging folder from a killed run must not matter
    with caplog.at_level(logging.WARNING, logger="retrain.export.assets"):
        second = export_saved_model(serving_export.model, **export_kwargs(
            serving_export, base, 2, warmup_images=[b"not an image"]))
    assert second == base / "2" and numeric_dirs(base) == ["1", "2"]
    assert "skipping a warmup image" in caplog.text
    records = list(tf.data.TFRecordDataset(str(second / "assets.extra" / "tf_serving_warmup_requests")))
    assert len(records) == 1  # the grey PNG that replaces refused warmup images


def test_signatures_in_process_match_the_model(serving_export, loaded):
    images = solid_images()
    expected = serving_export.model(images, training=False).numpy()
    np.testing.assert_allclose(loaded.signatures["serving_images"](images=tf.constant(images))["scores"],
                               expected, atol=1e-6)
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([serving_export.samples["jpeg"]]))
    assert out["classes"].numpy().tolist() == [[label.encode() for label in LABELS]]


def test_empty_batches_skip_the_model():
    """EfficientNet-Lite0 fails on N = 0; the bytes signatures answer [0, K] without calling it."""
    def picky(images, training=False):
        with tf.control_dependencies([tf.debugging.assert_positive(tf.shape(images)[0])]):
            return tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2]))

    signatures = saved_model._signatures(picky, ["a", "b", "c"], 8, 1000)
    for name, key in [("serving_default", "image_bytes"), ("classify", "inputs")]:
        out = signatures[name](**{key: tf.constant([], tf.string)})
        assert out["scores"].shape == (0, 3) and out["classes"].shape == (0, 3)


def test_lean_save_tracks_only_captured_variables(serving_export):
    signatures = saved_model._signatures(serving_export.model, LABELS, IMAGE_SIZE, MAX_PIXELS)
    holder = saved_model._holder(serving_export.model, signatures)
    assert not hasattr(holder, "model") and len(holder.captured_variables) == 4  # module 2 + head 2


def test_a_captured_table_falls_back_to_saving_the_whole_model():
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["a"], [1]), default_value=0)
    function = tf.function(lambda x: table.lookup(x), input_signature=[tf.TensorSpec([None], tf.string)])
    holder = saved_model._holder(model=table, signatures={"t": function.get_concrete_function()})
    assert holder.model is table


def test_method_name_rewrite_for_strict_servers(serving_export, tmp_path):
    """README: MethodNameUpdater turns classify into a Classify-API signature."""
    copy = shutil.copytree(serving_export.version_dir, tmp_path / "1")
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(str(copy))
    updater.replace_method_name(signature_key="classify", method_name="tensorflow/serving/classify", tags="serve")
    updater.save()
    from tensorflow.core.protobuf import saved_model_pb2

    graph = saved_model_pb2.SavedModel.FromString((copy / "saved_model.pb").read_bytes()).meta_graphs[0]
    assert graph.signature_def["classify"].method_name == "tensorflow/serving/classify"
    assert tf.compat.v1.saved_model.is_valid_signature(graph.signature_def["classify"])
    assert "classify" in tf.saved_model.load(str(copy)).signatures


@pytest.fixture(scope="module")
def tflite_float32(serving_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("lite") / "model.tflite"
    return export_tflite(serving_export.version_dir, out, "float32", None)


def test_tflite_float32_converts_with_builtins_and_matches(serving_export, loaded, tflite_float32):
    images = solid_images()
    expected = loaded.signatures["serving_images"](images=tf.constant(images))["scores"].numpy()
    np.testing.assert_allclose(tflite_scores(tflite_float32, images), expected, atol=1e-5)
    assert tflite_scores(tflite_float32, images[:0]).shape == (0, len(LABELS))


@pytest.mark.slow
@pytest.mark.parametrize("kind,atol", [("float16", 2e-2), ("int8", 0.15), ("uint8", 0.15)])
def test_tflite_reduced_kinds_stay_close(serving_export, loaded, tmp_path, kind, atol):
    images = solid_images()
    out = export_tflite(serving_export.version_dir, tmp_path / f"{kind}.tflite", kind, images)
    expected = loaded.signatures["serving_images"](images=tf.constant(images))["scores"].numpy()
    scores = tflite_scores(out, images)
    assert scores.shape == expected.shape and np.abs(scores - expected).max() < atol
    assert [p.name for p in tmp_path.iterdir()] == [f"{kind}.tflite"]


def test_tflite_rejects_bad_kinds_and_calibration(serving_export, tmp_path, tflite_float32):
    with pytest.raises(RetrainError, match="--tflite"):
        export_tflite(serving_export.version_dir, tmp_path / "m.tflite", "int4", None)
    with pytest.raises(RetrainError, match="calibration"):
        export_tflite(serving_export.version_dir, tmp_path / "m.tflite", "int8", np.zeros((2, 5, 5, 3)))
    with pytest.raises(RetrainError, match="images: found shape"):
        tflite_scores(tflite_float32, np.zeros((1, 5, 5, 3), np.float32))
