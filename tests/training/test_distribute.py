"""Phase-2 fine-tuning under tf.distribute: MultiWorkerMirrored over two local CPU worker processes gives
the single-process result; a missing TF_CONFIG is one line."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fake_data import colour_set, write_images
from retrain.cli import main

pytestmark = pytest.mark.slow  # real worker processes, each importing TensorFlow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(images, fake_module, out, *extra) -> list[str]:
    return [sys.executable, "-m", "retrain", "--images", str(images), "--module", str(fake_module), "--output",
            str(out), "--cache-dir", str(out) + "-cache", "--image-size", "24", "--epochs", "10", "--fine-tune",
            "--fine-tune-epochs", "3", "--json", *extra]


def test_two_local_workers_fine_tune_like_one_process(tmp_path, fake_module):
    images = write_images(tmp_path / "imgs", colour_set(n=12))
    env = {**os.environ, "RETRAIN_CACHE_HOME": str(tmp_path / "home")}
    single = subprocess.run(command(images, fake_module, tmp_path / "single"), capture_output=True, text=True,
                            env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = [subprocess.Popen(command(images, fake_module, tmp_path / f"worker-{i}", "--strategy", "multi-worker"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                                     "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    outputs = [worker.communicate() for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    alone, chief = json.loads(single.stdout), json.loads(outputs[0][0])
    assert "2 replica(s)" in outputs[0][1] and chief["fine_tune"]["epochs"] == alone["fine_tune"]["epochs"]
    assert abs(chief["accuracy"]["validation"] - alone["accuracy"]["validation"]) <= 0.01
    assert abs(chief["fine_tune"]["after"]["val_loss"] - alone["fine_tune"]["after"]["val_loss"]) < 1e-3


def test_multi_worker_without_tf_config_is_one_line(tmp_path, fake_module, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    images = write_images(tmp_path / "imgs", colour_set(n=4))
    result = CliRunner().invoke(main, [str(a) for a in command(images, fake_module, tmp_path / "o",
                                                               "--strategy", "multi-worker")[3:]])
    assert result.exit_code == 1 and "--strategy multi-worker: found no TF_CONFIG" in result.output
