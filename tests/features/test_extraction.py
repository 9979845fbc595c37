"""Feature extraction: cache hits by content, order of results, skipped files, LiteRT versus TensorFlow."""
from __future__ import annotations

import collections
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fake_data import colour_set, write_images
from retrain.backbone import engines
from retrain.errors import RetrainError
from retrain.features import matrix
from retrain.features.extraction import Extractor, extract, file_digest
from retrain.images.decoding import Decoder

# retrain.backbone.resolve.ModuleInfo carries these fields; a stand-in keeps this file independent of module loading.
Module = collections.namedtuple("Module", "handle path image_size feature_dim fingerprint")
SIZE = 32


@pytest.fixture
def module(fake_module) -> Module:
    # A fresh fingerprint per test: LiteRT conversions are shared by the session (RETRAIN_MODULE_DIR).
    return Module("fake", str(fake_module), None, 8, f"fake-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def images(tmp_path) -> list[Path]:
    return sorted(write_images(tmp_path / "images", colour_set(4)).rglob("*.png"))


def extractor(module, tmp_path, engine="tf", cache=True, image_size=SIZE, batch_size=5) -> Extractor:
    return Extractor(module=module, image_size=image_size, engine=engine,
                     cache_dir=tmp_path / "features" if cache else None, batch_size=batch_size,
                     max_pixels=10_000_000, workdir=tmp_path / "work")


def extraction(paths, module, tmp_path, engine="tf", cache=True, **kw):
    made = extractor(module, tmp_path, engine, cache, kw.pop("image_size", SIZE), kw.pop("batch_size", 5))
    return extract(made, list(paths), **kw)


def run(paths, module, tmp_path, engine="tf", cache=True, **kw) -> np.ndarray:
    """The whole feature matrix of an extraction where every file decodes."""
    result = extraction(paths, module, tmp_path, engine, cache, **kw)
    assert result.kept.all() and not result.skipped
    return result.matrix.read(np.arange(len(paths)))


def expected(paths, module: Module) -> np.ndarray:
    """The fake module's output computed by hand (solid colours survive the resize; float32 sums differ ~1e-4)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(module.path)
    means = np.array([np.asarray(Image.open(p).convert("RGB"), np.float32).mean((0, 1)) / 255 for p in paths])
    return (means * 4 - 2) @ loaded.projection.numpy() + loaded.offset.numpy()


def forbid_extraction(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the backbone ran although every feature should come from the cache")
    monkeypatch.setattr(engines, "open_engine", fail)


def test_file_digest_is_sha256_of_the_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_digest(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_extraction_prepares_the_decoder_on_an_image_that_decodes(images, module, tmp_path, monkeypatch):
    started, real = [], Decoder.prepare
    monkeypatch.setattr(Decoder, "prepare", lambda self, sample=None: started.append(real(self, sample)) or started[-1])
    extraction(images, module, tmp_path)
    assert started[0].result().shape == (1, SIZE, SIZE, 3)  # its sample ran through every stage of the graph
    started.clear()
    extraction(images, module, tmp_path)  # every row cached: nothing to decode, nothing to prepare
    assert started == []


def test_a_failing_decoder_warm_up_is_logged_with_its_traceback(monkeypatch, caplog):
    from retrain.images import decoding

    monkeypatch.setattr(decoding, "_ONE_PIXEL_PNG", b"\x89PNG\r\n\x1a\n" + bytes(40))  # no image in it
    with caplog.at_level(logging.ERROR, logger="retrain.images.decoding"):
        future = Decoder(SIZE, 10_000_000).prepare()
        with pytest.raises(Exception):  # noqa: B017 (whatever TensorFlow raises, the log must show it)
            future.result()
    assert "decoder warm-up failed" in caplog.text and caplog.records[-1].exc_info is not None


def test_features_follow_the_order_of_paths_including_duplicates(images, module, tmp_path):
    shutil.copy(images[0], tmp_path / "copy-of-first.png")
    paths = [images[5], images[0], images[5], tmp_path / "copy-of-first.png", *images]
    features = run(paths, module, tmp_path)
    assert features.shape == (len(paths), 8) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected(paths, module), atol=1e-3)


def test_renamed_and_moved_images_hit_the_cache(images, module, tmp_path, monkeypatch):
    first = run(images, module, tmp_path)
    moved = []
    for i, path in enumerate(images):
        target = tmp_path / "elsewhere" / f"renamed-{i}.png"
        target.parent.mkdir(exist_ok=True)
        moved.append(Path(shutil.move(path, target)))
    forbid_extraction(monkeypatch)
    again = extraction(moved, module, tmp_path)
    np.testing.assert_array_equal(again.matrix.read(np.arange(len(moved))), first)
    assert (again.cached, again.extracted) == (len(images), 0)


def test_an_edited_image_misses(images, module, tmp_path):
    run(images, module, tmp_path)
    Image.new("RGB", (24, 24), (255, 255, 0)).save(images[2])
    result = extraction(images, module, tmp_path)
    assert (result.cached, result.extracted) == (len(images) - 1, 1)
    np.testing.assert_allclose(result.matrix.read(np.arange(len(images))), expected(images, module), atol=1e-3)


@pytest.mark.slow
def test_module_fingerprint_and_image_size_get_their_own_namespace(images, module, tmp_path):
    run(images, module, tmp_path)
    run(images, module._replace(fingerprint=module.fingerprint + "-retrained"), tmp_path)
    run(images, module, tmp_path, image_size=SIZE * 2)
    run(images, module, tmp_path)  # all cached: no new namespace
    assert len(list((tmp_path / "features").iterdir())) == 3


@pytest.mark.slow
def test_torn_shards_are_recomputed(images, module, tmp_path):
    first = run(images, module, tmp_path, batch_size=64)
    (namespace,) = (tmp_path / "features").iterdir()
    (features_file,) = namespace.glob("*.f32.npy")
    features_file.write_bytes(features_file.read_bytes()[:-7])  # killed mid-write, before the rename
    (namespace / ".tmp-0-x.keys.npy").write_bytes(b"")
    again = extraction(images, module, tmp_path)
    assert (again.cached, again.extracted) == (0, len(images))
    np.testing.assert_allclose(again.matrix.read(np.arange(len(images))), first, atol=1e-6)


def test_without_cache_dir_nothing_is_written(images, module, tmp_path):
    features = run(images, module, tmp_path, cache=False)
    np.testing.assert_allclose(features, expected(images, module), atol=1e-3)
    assert not (tmp_path / "features").exists()


def test_large_matrices_live_in_a_file_under_workdir(images, module, tmp_path, monkeypatch):
    monkeypatch.setattr(matrix, "MEMMAP_BYTES", 0)
    result = extraction(images, module, tmp_path)
    assert result.matrix.path.parent == tmp_path / "work"
    np.testing.assert_allclose(result.matrix.read(np.arange(len(images))), expected(images, module), atol=1e-3)
    forbid_extraction(monkeypatch)
    assert extraction(images, module, tmp_path).matrix.path is not None  # filled from the cache too


@pytest.mark.parametrize("limit", [0, 1 << 30])
def test_matrix_reads_and_chunks_give_the_rows_put(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(matrix, "MEMMAP_BYTES", limit)
    values = np.random.default_rng(0).random((10, 4), dtype=np.float32)
    m = matrix.FeatureMatrix(10, 4, tmp_path)
    m.put(np.array([9, 3, 0]), values[[9, 3, 0]])
    m.put(np.array([1, 2, 4, 5, 6, 7, 8]), values[[1, 2, 4, 5, 6, 7, 8]])
    np.testing.assert_array_equal(m.read(np.array([5, 0, 2])), values[[5, 0, 2]])
    chunks = list(m.chunks(np.array([7, 1, 8, 2, 0]), 2))
    assert [rows.tolist() for rows, _ in chunks] == [[1, 7], [2, 8], [0]]
    for rows, part in chunks:
        np.testing.assert_array_equal(part, values[rows])


def test_one_bad_file_is_skipped_and_its_batch_kept(images, module, tmp_path):
    images[3].write_bytes(images[3].read_bytes()[:-12])  # a truncated PNG (no IEND) in the first batch of 5
    result = extraction(images, module, tmp_path)
    assert result.kept.tolist() == [i != 3 for i in range(len(images))]
    assert [(p.name, "PNG" in why) for p, why in result.skipped] == [(images[3].name, True)]
    assert "\n" not in result.skipped[0][1] and "{{" not in result.skipped[0][1]
    good = np.flatnonzero(result.kept)
    np.testing.assert_allclose(result.matrix.read(good), expected([images[i] for i in good], module), atol=1e-3)
    assert result.extracted == len(images) - 1
    again = extraction(images, module, tmp_path)  # the good ones were cached, the bad one is tried again
    assert (again.cached, again.extracted, len(again.skipped)) == (len(images) - 1, 0, 1)


@pytest.mark.slow
def test_litert_matches_tensorflow_and_converts_once(images, module, tmp_path):
    lite = run(images, module, tmp_path, engine="litert", cache=False, batch_size=3)
    tflite = engines.litert_path(module.fingerprint, SIZE)
    stamp = tflite.stat().st_mtime_ns
    again = run(images, module, tmp_path, engine="auto", cache=False)
    assert tflite.stat().st_mtime_ns == stamp, "the conversion was not reused"
    np.testing.assert_allclose(lite, run(images, module, tmp_path, engine="tf", cache=False), atol=1e-4)
    np.testing.assert_array_equal(again, lite)


@pytest.mark.parametrize("stage", ["conversion", "first plan"])
def test_auto_falls_back_to_tensorflow_when_litert_fails(images, module, tmp_path, monkeypatch, caplog, stage):
    """Whether the module does not convert, or converts and cannot be planned (which happens at the
    engine's first batch, after open_engine returned): auto falls back to TensorFlow with a warning,
    --engine litert is refused in one line."""
    from ai_edge_litert.interpreter import Interpreter

    def unsupported(*args, **kwargs):
        raise RuntimeError(f"LiteRT failed at the {stage}")
    if stage == "conversion":
        monkeypatch.setattr(engines, "convert", unsupported)
    else:
        run(images, module, tmp_path, engine="litert", cache=False)  # the conversion exists and is sound
        monkeypatch.setattr(Interpreter, "allocate_tensors", unsupported)
    with caplog.at_level(logging.WARNING, logger="retrain.backbone.engines"):
        features = run(images, module, tmp_path, engine="auto", cache=False)
    assert f"failed at the {stage}" in caplog.text and "TensorFlow" in caplog.text
    np.testing.assert_allclose(features, expected(images, module), atol=1e-3)
    with pytest.raises(RetrainError, match="^--engine litert: found a module LiteRT cannot run"):
        run(images, module, tmp_path, engine="litert", cache=False)


def save_signature_only_module(path: Path) -> Path:
    """A module exported the TF1 Hub way: no __call__, a `default` signature with a dict output."""
    import tensorflow as tf

    holder = tf.Module()
    holder.scale = tf.Variable(2.0)
    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    default = tf.function(lambda images: {"default": tf.reduce_mean(images, [1, 2]) * holder.scale},
                          input_signature=[spec])
    tf.saved_model.save(holder, str(path), signatures={"default": default})
    return path


@pytest.mark.parametrize("engine", ["tf", "litert"])
def test_a_signature_only_module_runs(images, tmp_path, engine):
    path = save_signature_only_module(tmp_path / "tf1-module")
    module = Module("tf1", str(path), None, 3, f"tf1-{uuid.uuid4().hex[:8]}")
    features = run(images, module, tmp_path, engine=engine, cache=False)
    means = np.array([np.asarray(Image.open(p).convert("RGB"), np.float32).mean((0, 1)) / 255 for p in images])
    np.testing.assert_allclose(features, means * 2, atol=1e-4)


@pytest.mark.slow
def test_bundled_module_litert_matches_tensorflow(tmp_path):
    from retrain.backbone import resolve

    info = resolve.load_info("efficientnet_lite0")
    size = info.image_size or 224
    paths = sorted(write_images(tmp_path / "images", colour_set(3), size=40).rglob("*.png"))
    lite = extract(extractor(info, tmp_path, "litert", False, size, 4), paths).matrix.read(np.arange(len(paths)))
    tf_features = extract(extractor(info, tmp_path, "tf", False, size, 4), paths).matrix.read(np.arange(len(paths)))
    assert lite.shape == (len(paths), info.feature_dim)
    np.testing.assert_allclose(lite, tf_features, atol=1e-4)


def test_no_paths_give_an_empty_matrix(module, tmp_path):
    assert extraction([], module, tmp_path).matrix.shape == (0, 8)


def test_decoding_ahead_gives_what_decoding_in_turn_gives_with_skips_in_batch_order(images, tmp_path):
    """Background decoding (decode_ahead) changes when batches decode, never what comes out or the skip order."""
    import threading

    from retrain.images.decoding import Decoder, decode_ahead

    for i in (1, 7):  # a bad file in the first and in the second batch of 5
        images[i].write_bytes(b"not an image")
    decode, batches = Decoder(SIZE, 10_000_000), [images[i:i + 5] for i in range(0, len(images), 5)]
    serial_skips, ahead_skips = [], []
    serial = [decode(batch, serial_skips) for batch in batches]
    threads = threading.active_count()
    ahead = list(decode_ahead(decode, batches, ahead_skips, depth=2))
    assert [good for _, good in ahead] == [good for _, good in serial] == [[0, 2, 3, 4], [0, 1, 3, 4], [0, 1]]
    for (a, _), (b, _) in zip(ahead, serial):
        np.testing.assert_array_equal(a, b)
    assert [p for p, _ in ahead_skips] == [p for p, _ in serial_skips] == [images[1], images[7]]
    stream = decode_ahead(decode, batches, [], depth=2)
    next(stream)
    stream.close()  # a stop after the first batch: the pool is shut down, no thread outlives it
    assert threading.active_count() == threads


def test_a_decoder_call_splits_large_files_into_runs_and_keeps_the_order(images, tmp_path, monkeypatch):
    from retrain.images import decoding

    monkeypatch.setattr(decoding, "_RUN_BYTES", 1)  # every file is a run of its own
    images[2].write_bytes(b"broken")
    skipped = []
    pixels, good = decoding.Decoder(SIZE, 10_000_000)(images[:5], skipped)
    assert good == [0, 1, 3, 4] and pixels.shape == (4, SIZE, SIZE, 3)
    whole, _ = decoding.Decoder(SIZE, 10_000_000)([images[i] for i in good], [])
    np.testing.assert_array_equal(pixels, whole)
    assert [p for p, _ in skipped] == [images[2]]


def test_jpegs_take_the_jpeg_only_graph_with_the_full_graphs_pixels_in_path_order(images, tmp_path, monkeypatch):
    import tensorflow as tf

    from retrain.images import preprocess

    jpegs = []
    for i, png in enumerate(images[:3]):
        jpegs.append(tmp_path / f"photo-{i}.jpg")
        Image.open(png).convert("RGB").resize((90, 60)).save(jpegs[-1], quality=90)
    paths = [jpegs[0], images[3], jpegs[1], images[4], jpegs[2]]
    graphs = []
    real = Decoder._decode
    monkeypatch.setattr(Decoder, "_decode", lambda self, blobs, jpeg: graphs.append((len(blobs), jpeg))
                        or real(self, blobs, jpeg))
    pixels, good = Decoder(SIZE, 10_000_000)(paths, [])
    assert good == [0, 1, 2, 3, 4] and sorted(graphs) == [(2, False), (3, True)]  # one call per graph
    full = preprocess.decode_batch(tf.constant([p.read_bytes() for p in paths]), SIZE, 10_000_000).numpy()
    np.testing.assert_array_equal(pixels, full)
    assert Decoder(SIZE, 10_000_000).prepare(jpegs[0]).result().shape == (1, SIZE, SIZE, 3)
    assert graphs[-1] == (1, True)  # a JPEG sample warms the graph JPEGs take


def test_each_files_size_is_looked_up_once_and_batches_hold_at_most_their_bytes(images, module, tmp_path,
                                                                                 monkeypatch):
    from retrain import fs
    from retrain.features import extraction as extraction_module
    from retrain.images import decoding

    looked_up, real_size = collections.Counter(), fs.size
    monkeypatch.setattr(fs, "size", lambda path: looked_up.update([path]) or real_size(path))
    batches, real_decode_ahead = [], decoding.decode_ahead
    monkeypatch.setattr(extraction_module, "decode_ahead",
                        lambda decode, groups, *a, **k: real_decode_ahead(decode, batches.extend(groups) or groups,
                                                                          *a, **k))
    sizes = [path.stat().st_size for path in images]
    assert 3 * min(sizes) > 2 * max(sizes)  # so a limit of two of the largest holds exactly two files
    monkeypatch.setattr(extraction_module, "_BATCH_BYTES", 2 * max(sizes))
    run(images, module, tmp_path, batch_size=5)
    assert looked_up == collections.Counter(images)
    assert batches == [[i, i + 1] for i in range(0, len(images), 2)]
