"""Check an export against the serving contract in a process that imports only TensorFlow.

    python tests/helpers/serve_check.py VERSION_DIR SAMPLES_DIR [--only check,check]

SAMPLES_DIR holds <name>.bin sample files and expect.json (tests/helpers/serving_fixture.py writes them).
Run as a script it refuses to import tf_keras, tensorflow_hub and retrain, as a bare TF Serving
image would, then prints one JSON line {check: "ok" or "FAIL: why"} and exits 1 if any failed.
The animated-WebP and huge-image checks can kill a process, which is why they run here.
"""
from __future__ import annotations

import importlib.abc
import sys

FORBIDDEN = ("tf_keras", "tensorflow_hub", "retrain")


class _Forbid(importlib.abc.MetaPathFinder):
    """Makes the forbidden packages look uninstalled."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ModuleNotFoundError(f"serve_check: {name} must not be needed to serve", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _Forbid())

import base64  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

import rest_emulator  # noqa: E402

# Every op the export may contain: graph plumbing and checkpointing, control flow (map_fn's While
# and TensorLists, tf.cond, switch_case), decoding (DCT-scaled JPEG), antialiased resize (ScaleAndTranslate),
# header checks and EXIF orientation (flips and
# turns), and the math of image feature-vector modules. Anything else (PyFunc, tensorflow-io,
# addons) must fail the check.
ALLOWED_OPS = frozenset("""
Const Identity IdentityN NoOp Placeholder PlaceholderWithDefault PartitionedCall StatefulPartitionedCall
VarHandleOp ReadVariableOp AssignVariableOp DisableCopyOnRead SaveV2 RestoreV2 MergeV2Checkpoints
ShardedFilename StringJoin StaticRegexFullMatch Select SelectV2
While StatelessWhile If StatelessIf Case StatelessCase TensorListFromTensor TensorListGetItem
TensorListReserve TensorListSetItem TensorListStack TensorListLength TensorListElementShape
DecodeImage DecodePng DecodeJpeg DecodeRaw ExtractJpegShape Substr StringLength ParseExampleV2 Assert StringFormat
EnsureShape ResizeBilinear ScaleAndTranslate Shape Pack Unpack StridedSlice Reshape ExpandDims Squeeze ConcatV2 Fill
Range Tile Cast
GatherV2 Slice Transpose ReverseV2 Pad MirrorPad ZerosLike OnesLike
Abs AddV2 Add Sub Mul RealDiv FloorDiv FloorMod Maximum Minimum Neg Square Sqrt Rsqrt Exp Log
BitwiseAnd Equal NotEqual Greater GreaterEqual Less LessEqual LogicalAnd LogicalNot LogicalOr All Any
Mean Sum Max Min Prod Softmax MatMul BatchMatMulV2 BiasAdd Relu Relu6 Sigmoid Tanh Elu Selu Erf
Conv2D DepthwiseConv2dNative FusedBatchNorm FusedBatchNormV3 AvgPool MaxPool
""".split())
NEVER_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
CHECKS: dict = {}


def check(function):
    CHECKS[function.__name__] = function
    return function


class Context:
    """What the checks share: the export, its parsed saved_model.pb, the samples, the answers."""

    def __init__(self, version_dir: Path, samples_dir: Path):
        self.version_dir = Path(version_dir)
        self.samples = {p.stem: p.read_bytes() for p in Path(samples_dir).glob("*.bin")}
        self.expect = json.loads((Path(samples_dir) / "expect.json").read_text(encoding="utf-8"))
        self.proto = saved_model_pb2.SavedModel.FromString((self.version_dir / "saved_model.pb").read_bytes())
        self._loaded = None

    @property
    def loaded(self):
        if self._loaded is None:
            self._loaded = tf.saved_model.load(str(self.version_dir))
        return self._loaded

    def serve(self, *names: str, signature: str = "serving_default") -> dict:
        data = [self.samples[name] for name in names]
        outputs = self.loaded.signatures[signature](image_bytes=tf.constant(data, tf.string))
        return {key: value.numpy() for key, value in outputs.items()}

    def refuses(self, data: list[bytes], signature: str = "serving_default", key: str = "image_bytes") -> str:
        try:
            self.loaded.signatures[signature](**{key: tf.constant(data, tf.string)})
        except tf.errors.InvalidArgumentError as error:
            return error.message
        raise AssertionError(f"accepted {len(data)} input(s) starting {data[0][:12]!r}, "
                             "expected InvalidArgumentError")


def _close(found, expected, atol: float, what: str) -> None:
    found, expected = np.asarray(found), np.asarray(expected)
    if found.shape != expected.shape or not np.allclose(found, expected, atol=atol, rtol=0):
        raise AssertionError(f"{what}: found {found.tolist()}, expected {expected.tolist()} (atol {atol})")


@check
def layout(ctx: Context) -> None:
    """Contract 1-3: <base>/<integer>/ with saved_model.pb, variables and assets.extra; nothing else numeric."""
    assert re.fullmatch(r"[0-9]+", ctx.version_dir.name), f"version folder {ctx.version_dir.name!r} is not an integer"
    for name in ["saved_model.pb", "variables/variables.index", "assets.extra/labels.txt",
                 "assets.extra/export_info.json", "assets.extra/tf_serving_warmup_requests"]:
        assert (ctx.version_dir / name).is_file(), f"missing {name}"
    assert list((ctx.version_dir / "variables").glob("variables.data-*-of-*")), "missing variables data shards"
    for sibling in ctx.version_dir.parent.iterdir():
        if re.fullmatch(r"[0-9]+", sibling.name):
            assert (sibling / "variables" / "variables.index").is_file(), f"{sibling} has no variables"


@check
def one_serve_metagraph(ctx: Context) -> None:
    """Contract 4."""
    tags = [list(graph.meta_info_def.tags) for graph in ctx.proto.meta_graphs]
    assert tags == [["serve"]], f"found MetaGraph tags {tags}, expected [['serve']]"


def _spec(info) -> tuple:
    return tf.dtypes.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim]


@check
def signatures(ctx: Context) -> None:
    """Contract 5-8, 18, 19: names, dtypes and batch-major shapes of all three signatures."""
    defs, k, s = ctx.proto.meta_graphs[0].signature_def, len(ctx.expect["labels"]), ctx.expect["image_size"]
    both = {"scores": ("float32", [-1, k]), "classes": ("string", [-1, k])}
    wanted = {
        "serving_default": ({"image_bytes": ("string", [-1])}, both),
        "classify": ({"inputs": ("string", [-1])}, both),
        "serving_images": ({"images": ("float32", [-1, s, s, 3])}, {"scores": ("float32", [-1, k])}),
    }
    for name, (inputs, outputs) in wanted.items():
        sig = defs[name]
        assert sig.method_name == "tensorflow/serving/predict", f"{name}: method {sig.method_name}"
        assert tf.compat.v1.saved_model.is_valid_signature(sig), f"{name} is not a valid signature"
        assert {key: _spec(v) for key, v in sig.inputs.items()} == inputs, f"{name} inputs {sig.inputs}"
        assert {key: _spec(v) for key, v in sig.outputs.items()} == outputs, f"{name} outputs {sig.outputs}"
    for name, sig in defs.items():
        assert not [key for key in sig.outputs if key.endswith("_bytes")], f"{name} has a *_bytes output"


@check
def labels_in_graph(ctx: Context) -> None:
    """Contract 9: classes rows are the label list; labels.txt holds the same; argmax names one."""
    labels = ctx.expect["labels"]
    text = (ctx.version_dir / "assets.extra" / "labels.txt").read_text(encoding="utf-8")
    assert text.splitlines() == labels, f"labels.txt {text.splitlines()} != {labels}"
    out = ctx.serve("jpeg", "png_small")
    assert out["classes"].tolist() == [[label.encode() for label in labels]] * 2, f"classes {out['classes']}"
    best = out["classes"][0][int(np.argmax(out["scores"][0]))].decode()
    assert best == labels[int(np.argmax(ctx.expect["skew_jpeg_scores"]))], f"argmax label {best}"


@check
def skew(ctx: Context) -> None:
    """Contract 10: serving_default equals the in-memory model on training's preprocessing."""
    _close(ctx.serve("jpeg")["scores"][0], ctx.expect["skew_jpeg_scores"], 1e-5, "serving_default scores")


@check
def mixed_batch(ctx: Context) -> None:
    """Contract 11: big JPEG, small PNG, grayscale, RGBA PNG and animated GIF in one call."""
    out = ctx.serve(*ctx.expect["mixed_batch"])
    assert out["scores"].shape == (5, len(ctx.expect["labels"])), f"scores shape {out['scores'].shape}"
    single = ctx.serve("rgba_png")["scores"][0]
    _close(out["scores"][3], single, 1e-6, "an image's scores inside a batch")


@check
def all_formats(ctx: Context) -> None:
    """Every still format decodes: BMP, WebP (lossy, lossless, alpha), gray PNG, 16-bit PNG."""
    names = ["bmp", "webp", "webp_lossless", "webp_rgba", "gray_png", "png16"]
    assert ctx.serve(*names)["scores"].shape[0] == len(names)


@check
def scores_sane(ctx: Context) -> None:
    """Contract 13: float32, finite, rows summing to 1 within 1e-5."""
    scores = ctx.serve("jpeg", "jpeg_large", "png16", "webp_rgba")["scores"]
    assert scores.dtype == np.float32 and np.all(np.isfinite(scores)), f"scores {scores}"
    _close(scores.sum(axis=1), np.ones(len(scores)), 1e-5, "row sums")


@check
def bad_input(ctx: Context) -> None:
    """Contract 12: non-images raise InvalidArgumentError (HTTP 400), alone or inside a batch."""
    for name in sorted(n for n in ctx.samples if n.startswith("bad_")):
        ctx.refuses([ctx.samples[name]])
    ctx.refuses([ctx.samples["jpeg"], ctx.samples["bad_text"]])


@check
def animated_webp(ctx: Context) -> None:
    """Contract 10, 12: animated WebPs of random content are refused, again and again, and we live."""
    webps = [data for name, data in sorted(ctx.samples.items()) if name.startswith("animated_webp")]
    for _ in range(5):
        for data in webps:
            message = ctx.refuses([data])
            assert "animated WebP" in message, message
    ctx.refuses([ctx.samples["png_small"], webps[0]])


@check
def pixel_limit(ctx: Context) -> None:
    """Contract 10: a 20,000 x 20,000 PNG of ~50 KB is refused from its header, fast and small."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    message = ctx.refuses([ctx.samples["huge_png"]])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "400000000 pixels" in message, message
    assert grown_mb < 100 and time.perf_counter() - started < 5, f"grew {grown_mb:.0f} MB"


@check
def empty_batch(ctx: Context) -> None:
    """Contract 12: N = 0 answers empty [0, K] outputs, no error."""
    out = ctx.loaded.signatures["serving_default"](image_bytes=tf.constant([], tf.string))
    k = len(ctx.expect["labels"])
    assert out["scores"].shape == (0, k) and out["classes"].shape == (0, k), f"{out}"


def example(image: bytes, key: str = "image/encoded") -> bytes:
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature={key: feature})).SerializeToString()


@check
def classify(ctx: Context) -> None:
    """Contract 18: serialized tf.train.Example with image/encoded -> the same classes and scores."""
    out = ctx.loaded.signatures["classify"](inputs=tf.constant([example(ctx.samples["jpeg"])]))
    _close(out["scores"].numpy()[0], ctx.expect["skew_jpeg_scores"], 1e-5, "classify scores")
    assert out["classes"].shape == (1, len(ctx.expect["labels"]))
    ctx.refuses([example(ctx.samples["jpeg"], key="image/other")], "classify", "inputs")


@check
def serving_images(ctx: Context) -> None:
    """Contract 19: float pixels in [0, 1] -> the in-memory model's scores."""
    s, colours = ctx.expect["image_size"], np.array(ctx.expect["solid_colours"], np.float32) / 255.0
    images = np.broadcast_to(colours[:, None, None, :], (len(colours), s, s, 3)).copy()
    scores = ctx.loaded.signatures["serving_images"](images=tf.constant(images))["scores"]
    _close(scores.numpy(), ctx.expect["solid_scores"], 1e-5, "serving_images scores")


@check
def stock_ops(ctx: Context) -> None:
    """Contract 15: every op in the graph and its function library is allowed and registered."""
    graph = ctx.proto.meta_graphs[0].graph_def
    functions = {f.signature.name for f in graph.library.function}
    ops = {node.op for node in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    ops -= functions  # a function called by name is checked through its own node_def
    assert not ops & NEVER_OPS, f"Python ops {sorted(ops & NEVER_OPS)}"
    assert ops <= ALLOWED_OPS, f"ops outside the allowlist: {sorted(ops - ALLOWED_OPS)}"
    assert all(hasattr(tf.raw_ops, op) for op in ops), "an op is not registered in stock TensorFlow"


@check
def warmup(ctx: Context) -> None:
    """Contract 17: 1..1000 PredictionLog records, each a batch-1 image_bytes request that replays."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = ctx.version_dir / "assets.extra" / "tf_serving_warmup_requests"
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert len(records) == ctx.expect["warmup_records"] and len(records) <= 1000, f"{len(records)} records"
    for record in records:
        request = record.predict_log.request
        assert request.model_spec.signature_name == "serving_default", request.model_spec
        tensor = request.inputs["image_bytes"]
        assert list(request.inputs) == ["image_bytes"] and tensor.dtype == tf.string.as_datatype_enum
        assert [d.size for d in tensor.tensor_shape.dim] == [1], tensor.tensor_shape
        out = ctx.loaded.signatures["serving_default"](image_bytes=tf.constant(tf.make_ndarray(tensor)))
        assert out["scores"].shape == (1, len(ctx.expect["labels"]))


@check
def export_info(ctx: Context) -> None:
    """Contract 16: TF version and what to serve it with, plus the facts a client needs."""
    info = json.loads((ctx.version_dir / "assets.extra" / "export_info.json").read_text(encoding="utf-8"))
    assert info["tensorflow_version"] == tf.__version__, info["tensorflow_version"]
    assert info["serve_with"] == f"TF Serving >= {tf.__version__}", info["serve_with"]
    expected = {k: ctx.expect[k] for k in ("labels", "image_size", "max_pixels", "module_handle")}
    assert {k: info.get(k) for k in expected} == expected, info
    assert info["metrics"] == ctx.expect["metrics"] and re.match(r"\d{4}-\d\d-\d\dT", info["created"]), info


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


@check
def rest(ctx: Context) -> None:
    """Contract 20: the four REST request forms, json_tensor.cc's answers and its 400s."""
    labels, pair = ctx.expect["labels"], [ctx.samples["jpeg"], ctx.samples["png_small"]]
    direct = ctx.serve("jpeg", "png_small")["scores"]
    bodies = {"row": {"instances": [_b64(d) for d in pair]},
              "row_named": {"instances": [{"image_bytes": _b64(d)} for d in pair]},
              "columnar_named": {"inputs": {"image_bytes": [_b64(d) for d in pair]}},
              "columnar": {"inputs": [_b64(d) for d in pair]}}
    for form, body in bodies.items():
        status, answer = rest_emulator.predict(ctx.loaded, json.dumps(body))
        answer = json.loads(json.dumps(answer, ensure_ascii=False))  # must survive JSON text
        assert status == 200, f"{form}: {status} {answer}"
        if form.startswith("row"):
            rows = answer["predictions"]
            assert [sorted(r) for r in rows] == [["classes", "scores"]] * 2, f"{form}: {answer}"
            scores, classes = [r["scores"] for r in rows], [r["classes"] for r in rows]
        else:
            scores, classes = answer["outputs"]["scores"], answer["outputs"]["classes"]
        assert classes == [labels, labels], f"{form}: classes {classes}"
        _close(scores, direct, 1e-6, f"{form} scores")
    _rest_refusals(ctx)


def _rest_refusals(ctx: Context) -> None:
    jpeg = ctx.samples["jpeg"]
    text = base64.b64encode(jpeg).decode("ascii")
    assert "+" in text or "/" in text, "the sample must exercise the standard alphabet"
    url_safe = text.replace("+", "-").replace("/", "_")
    refused = {
        "extra key beside b64": {"instances": [{"b64": text, "note": "x"}]},
        "URL-safe alphabet": {"instances": [{"b64": url_safe}]},
        "empty instances": {"instances": []},
        "both keys": {"instances": [_b64(jpeg)], "inputs": [_b64(jpeg)]},
        "not an image": {"instances": [_b64(b"not an image")]},
        "raw string": {"instances": ["not base64, not an image"]},
        "scalar where [N] is expected": {"inputs": _b64(jpeg)},
        "b64 value not a string": {"instances": [{"b64": 5}]},
    }
    for why, body in refused.items():
        status, answer = rest_emulator.predict(ctx.loaded, json.dumps(body))
        assert status == 400 and "error" in answer, f"{why}: {status} {answer}"
        if why == "not an image":
            assert "not a JPEG, PNG, GIF, BMP or WebP" in answer["error"], answer
    status, answer = rest_emulator.predict(ctx.loaded, json.dumps({"inputs": []}))
    assert status == 200 and answer == {"outputs": {"scores": [], "classes": []}}, f"N=0 columnar: {answer}"
    body = {"signature_name": "classify", "inputs": {"inputs": [_b64(example(jpeg))]}}
    status, answer = rest_emulator.predict(ctx.loaded, json.dumps(body))
    assert status == 200 and len(answer["outputs"]["scores"]) == 1, f"classify: {answer}"


@check
def self_contained(ctx: Context) -> None:
    """Contract 14: nothing above needed tf_keras, tensorflow_hub or retrain."""
    ctx.loaded  # noqa: B018 (the load itself is part of what must work alone)
    found = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    assert not found, f"imported {found}"


def run(version_dir: Path, samples_dir: Path, only: list[str] | None = None) -> dict[str, str]:
    """Run the checks (all, or `only`), in order; a failure of one does not stop the others."""
    ctx, report = Context(version_dir, samples_dir), {}
    for name, function in CHECKS.items():
        if only is None or name in only:
            print(f"serve_check: {name}", file=sys.stderr, flush=True)  # names the check if we die
            try:
                function(ctx)
                report[name] = "ok"
            except Exception as error:  # noqa: BLE001 (every failure is reported, by check)
                text = error.message if isinstance(error, tf.errors.OpError) else str(error)
                message = rest_emulator.op_message(text)
                report[name] = f"FAIL: {type(error).__name__}: {message[:400]}"
    return report


def main(argv: list[str]) -> int:
    only = argv[argv.index("--only") + 1].split(",") if "--only" in argv else None
    report = run(Path(argv[0]), Path(argv[1]), only)
    print(json.dumps(report, ensure_ascii=False), flush=True)
    return 0 if report and all(v == "ok" for v in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
