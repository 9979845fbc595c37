"""Module names, handles and folders -> a local SavedModel and its contract; offline failures are fast."""
from __future__ import annotations

import hashlib
import shutil

import pytest

from retrain.backbone import catalog, resolve
from retrain.errors import RetrainError

MOBILENET = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"


def cache_copy(cache, handle, module):
    """Place a module where tensorflow_hub caches ``handle``: <cache>/<sha1 of the handle>/."""
    target = cache / hashlib.sha1(handle.encode("utf8")).hexdigest()
    shutil.copytree(module, target)
    return target


def test_a_local_folder_reports_a_free_image_size(fake_module):
    info = resolve.load_info(str(fake_module))
    assert (info.handle, info.path, info.image_size, info.feature_dim) == (str(fake_module), str(fake_module), None, 8)
    assert len(info.fingerprint) >= 32 and int(info.fingerprint, 16) >= 0


def test_a_fixed_signature_gives_its_image_size(fixed_module, fake_module):
    info = resolve.load_info(str(fixed_module))
    assert (info.image_size, info.feature_dim) == (32, 8)
    assert info.fingerprint != resolve.load_info(str(fake_module)).fingerprint


def test_a_folder_without_saved_model_pb_is_refused(tmp_path):
    with pytest.raises(RetrainError) as error:
        resolve.resolve(str(tmp_path))
    assert str(error.value) == (f"--module: {tmp_path} has no saved_model.pb; "
                                "expected a TF2 SavedModel directory")


def test_a_file_is_refused(tmp_path):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"")
    with pytest.raises(RetrainError, match="is a file; expected a TF2 SavedModel directory"):
        resolve.resolve(str(path))


def test_an_unknown_word_points_at_the_module_list():
    with pytest.raises(RetrainError, match=r"found 'mobilenet'.*`retrain modules`"):
        resolve.resolve("mobilenet")


def test_a_misspelt_name_gets_the_close_names():
    with pytest.raises(RetrainError, match=r"found 'efficientnet_lite'.*did you mean efficientnet_lite0"):
        resolve.resolve("efficientnet_lite")


def test_a_feature_map_module_is_refused(tmp_path):
    import tensorflow as tf

    class FeatureMap(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, images):
            return images * 2.0  # [N, 8, 8, 3]: a feature map, not a vector

    tf.saved_model.save(FeatureMap(), str(tmp_path / "map"))
    with pytest.raises(RetrainError, match=r"outputs shape \(None, 8, 8, 3\); expected a feature vector"):
        resolve.load_info(str(tmp_path / "map"))


def test_image_size_follows_the_module_or_the_option(fake_module, fixed_module):
    free, fixed = resolve.load_info(str(fake_module)), resolve.load_info(str(fixed_module))
    assert (resolve.image_size_for(free, None), resolve.image_size_for(free, 64)) == (224, 64)
    assert resolve.image_size_for(fixed, None) == resolve.image_size_for(fixed, 32) == 32
    with pytest.raises(RetrainError, match="--image-size: found 64, but module .* expects 32x32"):
        resolve.image_size_for(fixed, 64)


def test_a_cached_handle_resolves_offline(hub_cache, no_network, fake_module):
    cached = cache_copy(hub_cache, MOBILENET, fake_module)
    assert resolve.resolve(MOBILENET) == str(cached)
    info = resolve.load_info("mobilenet_v2_100_224")  # the catalog name maps to the same handle
    assert (info.handle, info.path, info.feature_dim) == ("mobilenet_v2_100_224", str(cached), 8)


def test_a_cached_kaggle_handle_resolves_offline(hub_cache, no_network, fake_module):
    handle = "google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2"
    cached = cache_copy(hub_cache, "https://www.kaggle.com/models/" + handle, fake_module)
    assert resolve.resolve(handle) == str(cached)


def test_catalog_rows_are_complete(hub_cache, fake_module):
    cache_copy(hub_cache, MOBILENET, fake_module)
    rows = {row["name"]: row for row in catalog.rows()}
    assert all(set(row) == {"name", "handle", "image_size", "feature_dim", "offline"} for row in rows.values())
    assert all(isinstance(row["image_size"], int) and isinstance(row["feature_dim"], int) for row in rows.values())
    assert rows["efficientnet_lite0"] | {"handle": None} == {
        "name": "efficientnet_lite0", "handle": None, "image_size": 224, "feature_dim": 1280, "offline": True}
    assert rows["mobilenet_v2_100_224"]["offline"] and not rows["mobilenet_v2_140_224"]["offline"]
    sizes = [rows[f"efficientnet_b{b}"]["image_size"] for b in range(8)]
    assert sizes == [224, 240, 260, 300, 380, 456, 528, 600]
    assert rows["efficientnet_b7"]["handle"] == "https://tfhub.dev/tensorflow/efficientnet/b7/feature-vector/1"
    assert rows["efficientnet_v2_imagenet1k_s"] == {
        "name": "efficientnet_v2_imagenet1k_s", "image_size": 384, "feature_dim": 1280, "offline": False,
        "handle": "https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet1k_s/feature_vector/2"}
    assert (rows["inception_v3"]["image_size"], rows["inception_v3"]["feature_dim"]) == (299, 2048)
    assert rows["bit_m_r50x1"]["handle"] == "https://tfhub.dev/google/bit/m-r50x1/1"
    for name in ("mobilenet_v3_small_100_224", "mobilenet_v3_large_100_224", "resnet_v2_50"):
        assert rows[name]["handle"].startswith("https://tfhub.dev/google/imagenet/" + name)
