"""`retrain serve` through a client written from TF Serving's REST documentation, on a real loopback server.

Every answer is compared with the SavedModel called directly and with tests/rest_emulator.py (TF
Serving's json_tensor.cc rules): same JSON for :predict in both formats and :classify, same error
shapes and codes, and the server stays up through every refusal.
"""
from __future__ import annotations

import json
import shutil
import signal
import threading

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason='the serve extra is not installed (pip install "retrain[serve]")')

import rest_emulator  # noqa: E402
from serve_check import example  # noqa: E402
from serve_client import Client, Server, b64  # noqa: E402


@pytest.fixture(scope="module")
def loaded(serving_export):
    import tensorflow as tf

    return tf.saved_model.load(str(serving_export.version_dir))


@pytest.fixture(scope="module")
def server(serving_export, tmp_path_factory):
    """One server on a copy of the shared export (version 1), with a 1 MB body limit."""
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(serving_export.version_dir, root / "base" / "1")
    served = Server(root / "base", "--max-body-mb", "1", "-v", log_path=root / "serve.log")
    yield served
    assert served.stop() == 130, served.log()  # Ctrl-C: a clean stop, reported as shells report SIGINT


@pytest.fixture
def client(server):
    connection = Client(server.url)
    yield connection
    connection.close()


def _emulated(loaded, body: dict) -> tuple[int, dict]:
    status, answer = rest_emulator.predict(loaded, json.dumps(body))
    return status, json.loads(json.dumps(answer, ensure_ascii=False))


BODIES = {
    "row": lambda images: {"instances": [b64(d) for d in images]},
    "row_named": lambda images: {"instances": [{"image_bytes": b64(d)} for d in images]},
    "columnar": lambda images: {"inputs": [b64(d) for d in images]},
    "columnar_named": lambda images: {"signature_name": "serving_default",
                                      "inputs": {"image_bytes": [b64(d) for d in images]}},
}


@pytest.mark.parametrize("form", sorted(BODIES))
def test_predict_answers_as_the_saved_model_does(client, loaded, serving_export, form):
    import tensorflow as tf

    images = [serving_export.samples[name] for name in ("jpeg", "png_small", "gray_jpeg")]
    status, answer, headers = client.predict(BODIES[form](images))
    assert status == 200, answer
    assert (status, answer) == _emulated(loaded, BODIES[form](images))
    assert headers["x-model-version"] == "1" and headers["content-type"] == "application/json"
    direct = loaded.signatures["serving_default"](image_bytes=tf.constant(images))["scores"].numpy()
    rows = answer["predictions"] if form.startswith("row") else [
        dict(zip(answer["outputs"], values)) for values in zip(*answer["outputs"].values())]
    np.testing.assert_allclose([row["scores"] for row in rows], direct, atol=1e-6)
    assert [row["classes"] for row in rows] == [serving_export.labels] * 3


def test_classify_answers_as_the_saved_model_does(client, loaded, serving_export):
    import tensorflow as tf

    images = [serving_export.samples["jpeg"], serving_export.samples["bmp"]]
    body = {"signature_name": "classify", "examples": [{"image/encoded": b64(d)} for d in images]}
    status, answer, _ = client.classify(body)
    assert status == 200, answer
    direct = loaded.signatures["classify"](inputs=tf.constant([example(d) for d in images]))
    expected = [[[c.decode(), float(str(s))] for c, s in zip(classes, scores)]
                for classes, scores in zip(direct["classes"].numpy(), direct["scores"].numpy())]
    assert answer == {"results": expected}
    # a context feature is merged into every example, as TF Serving's ExampleListWithContext is
    body = {"signature_name": "classify", "context": {"image/encoded": b64(images[0])}, "examples": [{}, {}]}
    status, answer, _ = client.classify(body)
    assert status == 200 and answer["results"] == [expected[0], expected[0]], answer


def test_status_and_metadata_in_tf_servings_shapes(client, loaded, serving_export):
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    assert client.status() == (200, {"model_version_status": [{
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]},
        client.status()[2])
    assert client.status(1)[:2] == client.status()[:2]
    status, answer, _ = client.metadata()
    assert status == 200 and answer["model_spec"] == {"name": "model", "signature_name": "", "version": "1"}
    proto = saved_model_pb2.SavedModel.FromString((serving_export.version_dir / "saved_model.pb").read_bytes())
    defs = answer["metadata"]["signature_def"]["signature_def"]
    assert sorted(defs) == sorted(proto.meta_graphs[0].signature_def)
    default = defs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert default["inputs"]["image_bytes"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert default == json_format.MessageToDict(proto.meta_graphs[0].signature_def["serving_default"],
                                                preserving_proto_field_name=True,
                                                always_print_fields_with_no_presence=True)


def test_refusals_have_tf_servings_shapes_and_codes_and_the_server_stays_up(client, server, loaded, serving_export):
    jpeg = serving_export.samples["jpeg"]
    text = b64(jpeg)["b64"]
    emulated = {  # the same body through the emulator of TF Serving's codec: same code, an "error" text
        "unknown signature": {"signature_name": "nope", "instances": [b64(jpeg)]},
        "bad base64": {"instances": [{"b64": text.replace("+", "-").replace("/", "_")}]},
        "extra key beside b64": {"instances": [{"b64": text, "note": "x"}]},
        "not an image": {"instances": [b64(b"not an image")]},
        "decompression bomb": {"instances": [b64(serving_export.samples["huge_png"])]},
        "empty instances": {"instances": []},
        "both keys": {"instances": [b64(jpeg)], "inputs": [b64(jpeg)]},
    }
    for why, body in emulated.items():
        status, answer, _ = client.predict(body)
        assert (status, sorted(answer)) == (400, ["error"]), f"{why}: {status} {answer}"
        assert _emulated(loaded, body)[0] == 400, why
        assert isinstance(answer["error"], str) and answer["error"], why
    assert "not a JPEG, PNG, GIF, BMP or WebP" in client.predict(emulated["not an image"])[1]["error"]
    assert "--max-pixels" in client.predict(emulated["decompression bomb"])[1]["error"]
    assert client.predict(b'{"instances": [')[:2] == (400, {"error": "JSON Parse error: Expecting value at offset: 15"})
    assert client.predict(b"[1]")[:2] == (400, {"error": "JSON Value: [1] Is not object"})
    assert client.predict({"instances": [b64(jpeg)]}, version=7)[:2] == (
        404, {"error": "Servable not found for request: Specific(model, 7)"})
    assert client.status(7)[:2] == (404, {"error": "Could not find version 7 of model model"})
    other = Client(server.url, model="other")
    assert other.predict({"instances": [b64(jpeg)]})[:2] == (404, {"error": "Servable not found for request: "
                                                                           "Latest(other)"})
    other.close()
    big = {"instances": [b64(b"\0" * 2**20)]}  # 1.4 MB of JSON against the 1 MB limit
    status, answer, _ = client.predict(big)
    assert status == 413 and "over the limit" in answer["error"], answer
    assert client.request("GET", "/v1/models/model:predict")[:2] == (
        400, {"error": "Malformed request: GET /v1/models/model:predict"})
    assert server.alive() and client.status()[0] == 200
    assert client.predict({"instances": [b64(jpeg)]})[0] == 200


def test_a_bad_image_among_concurrent_requests_fails_alone(server, serving_export, loaded):
    """Concurrent requests are batched into one call; a refused image in the batch fails only its request."""
    names = ["jpeg", "png_small", "bad_text", "gray_jpeg", "webp", "bad_truncated_jpeg", "bmp", "rgba_png"] * 3
    results: dict[int, tuple] = {}

    def ask(i: int, name: str) -> None:
        connection = Client(server.url)
        results[i] = connection.predict({"instances": [b64(serving_export.samples[name])]})[:2]
        connection.close()

    threads = [threading.Thread(target=ask, args=(i, name)) for i, name in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, name in enumerate(names):
        expected = _emulated(loaded, {"instances": [b64(serving_export.samples[name])]})
        if name.startswith("bad"):
            assert (results[i][0], sorted(results[i][1]), expected[0]) == (400, ["error"], 400), name
        else:
            assert results[i] == expected, name


def test_request_log_line_per_request(server, client):
    client.status()
    assert "GET /v1/models/model 200" in server.log()


def test_page_is_served(client):
    status, _, headers = client.request("GET", "/v1/models/model")
    assert status == 200
    connection = client._connection
    connection.request("GET", "/")
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 200 and 'data-model="model"' in text
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere: works offline


@pytest.mark.slow
def test_versions_come_and_go_while_serving_and_half_written_ones_never_answer(serving_export, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(serving_export.version_dir, base / "1")
    served = Server(base, log_path=tmp_path / "serve.log")
    client = Client(served.url)
    image = {"instances": [b64(serving_export.samples["jpeg"])]}
    try:
        assert client.predict(image)[2]["x-model-version"] == "1"
        # a version being staged by retrain (.tmp-<...>, complete but not yet renamed) is not a version
        staged = base / ".tmp-123-abc-5"
        shutil.copytree(serving_export.version_dir, staged)
        # nor is a numeric folder still missing its variables (a writer copying it in)
        shutil.copytree(serving_export.version_dir, base / "9")
        shutil.rmtree(base / "9" / "variables")
        assert client.predict(image)[2]["x-model-version"] == "1"
        assert [s["version"] for s in client.status()[1]["model_version_status"]] == ["1"]
        staged.rename(base / "5")  # what retrain's staged_dir does: the next request sees version 5
        status, answer, headers = client.predict(image)
        assert (status, headers["x-model-version"]) == (200, "5"), answer
        assert client.predict(image, version=1)[2]["x-model-version"] == "1"  # any version by number
        shutil.rmtree(base / "5")  # deleted: served no more, the newest left answers
        assert client.predict(image)[2]["x-model-version"] == "1"
        assert client.predict(image, version=5)[0] == 404
        shutil.copytree(serving_export.version_dir / "variables", base / "9" / "variables")
        assert client.predict(image)[2]["x-model-version"] == "9"  # complete now
    finally:
        client.close()
        assert served.stop(signal.SIGTERM) == 143, served.log()
    assert "Traceback" not in served.log(), served.log()
