"""The serving contract (README, "Serving the model"), checked in a fresh process that imports only TensorFlow.

tests/helpers/serve_check.py runs once per session against the shared export; each of its checks is one
test here, so a failure names the contract point. The last tests prove serve_check fails loudly.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import serve_check

SCRIPT = Path(__file__).parents[1] / "helpers" / "serve_check.py"


def run_script(version_dir: Path, samples_dir: Path, *extra: str) -> tuple[int, dict, str]:
    result = subprocess.run([sys.executable, str(SCRIPT), str(version_dir), str(samples_dir), *extra],
                            capture_output=True, text=True)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "{}"
    return result.returncode, json.loads(last), result.stderr[-3000:]


@pytest.fixture(scope="session")
def report(serving_export):
    returncode, report, stderr = run_script(serving_export.version_dir, serving_export.samples_dir)
    return {"returncode": returncode, "checks": report, "stderr": stderr}


@pytest.mark.parametrize("name", list(serve_check.CHECKS))
def test_contract_point(report, name):
    assert name in report["checks"], f"serve_check died before {name} (rc {report['returncode']}): {report['stderr']}"
    assert report["checks"][name] == "ok", serve_check.CHECKS[name].__doc__


def test_script_exit_code_says_all_passed(report):
    assert report["returncode"] == 0, report["checks"]


def test_a_failing_check_fails_the_run(serving_export, tmp_path):
    """Wrong answers in expect.json, and this very process (it has tf_keras), must be reported."""
    samples = tmp_path / "samples"
    samples.mkdir()
    for path in serving_export.samples_dir.iterdir():
        (samples / path.name).write_bytes(path.read_bytes())
    expect = json.loads((samples / "expect.json").read_text(encoding="utf-8"))
    expect["skew_jpeg_scores"] = [1.0] + [0.0] * (len(expect["labels"]) - 1)
    expect["labels"] = list(reversed(expect["labels"]))
    (samples / "expect.json").write_text(json.dumps(expect), encoding="utf-8")
    args = [str(serving_export.version_dir), str(samples), "--only", "skew,labels_in_graph,self_contained"]
    assert serve_check.main(args) == 1
    report = serve_check.run(serving_export.version_dir, samples, ["skew", "labels_in_graph", "self_contained"])
    assert all(value.startswith("FAIL") for value in report.values()), report
    assert "imported" in report["self_contained"]


def test_forbidden_imports_look_uninstalled():
    finder = serve_check._Forbid()
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("tensorflow_hub")
    assert finder.find_spec("tensorflow") is None


@pytest.mark.slow
def test_a_retrain_runs_newest_version_passes_every_check(serving_export, fake_module, tmp_path):
    """The exporter's own fixture aside, what `retrain.run` publishes passes the whole contract too.

    Expected scores come from the run's float signature on the training pipeline's decoding of each
    sample, so the skew check compares bytes-in serving with what training fed the head.
    """
    import tensorflow as tf

    import retrain
    from fake_data import colour_set, write_images
    from retrain.images.preprocess import decode_resize
    from serving_fixture import IMAGE_SIZE, MAX_PIXELS, solid_images

    images = write_images(tmp_path / "imgs", colour_set(n=6))
    out = tmp_path / "out"
    for _ in range(2):  # the newest of two versions is the one checked
        result = retrain.run(retrain.Config(images=images, module=str(fake_module), output=out, epochs=20,
                                            image_size=IMAGE_SIZE))
    assert result.saved_model_dir == out / "saved_model" / "2"
    images_sig = tf.saved_model.load(str(result.saved_model_dir)).signatures["serving_images"]
    samples = tmp_path / "samples"
    samples.mkdir()
    for path in serving_export.samples_dir.glob("*.bin"):
        (samples / path.name).write_bytes(path.read_bytes())
    jpeg = decode_resize(tf.constant((samples / "jpeg.bin").read_bytes()), IMAGE_SIZE, MAX_PIXELS)[None]
    expect = json.loads((serving_export.samples_dir / "expect.json").read_text(encoding="utf-8"))
    expect |= {"labels": result.labels, "module_handle": str(fake_module),
               "warmup_records": min(3, sum(result.val_counts.values())),
               "metrics": {"val_accuracy": result.val_accuracy, "epochs": result.epochs,
                           f"{result.focus}_accuracy": result.metrics[result.focus]["accuracy"]},
               "skew_jpeg_scores": images_sig(images=jpeg)["scores"].numpy()[0].tolist(),
               "solid_scores": images_sig(images=tf.constant(solid_images()))["scores"].numpy().tolist()}
    (samples / "expect.json").write_text(json.dumps(expect), encoding="utf-8")
    returncode, report, stderr = run_script(result.saved_model_dir, samples)
    failed = {name: value for name, value in report.items() if value != "ok"}
    assert returncode == 0 and set(report) == set(serve_check.CHECKS), (failed, stderr)
