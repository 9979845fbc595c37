"""Faults with real processes: Ctrl-C and SIGTERM at each stage, a full disk, two runs on one folder.

Each interrupted run must exit 130 (SIGINT) or 143 (SIGTERM), leave no incomplete serving version,
no cache shard that reads wrong and no half-written report, and the next run must reuse every
feature computed before the interrupt.
"""
from __future__ import annotations

import csv
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fake_data import colour_set, write_images
from retrain import fs
from retrain.features.extraction import file_digest

pytestmark = pytest.mark.slow  # real processes importing TensorFlow: seconds each


def command(images: Path, fake_module: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "retrain", "--images", str(images), "--module", str(fake_module),
            "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--image-size", "24",
            *extra]


def child_env(tmp_path: Path) -> dict:
    return {**os.environ, "RETRAIN_CACHE_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}


def interrupt_at(args: list[str], marker: str, signum: int, env: dict) -> tuple[int, str]:
    """Start the run, send `signum` once a stderr line contains `marker`; returns (exit code, stderr)."""
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if marker in line:
            process.send_signal(signum)
            break
    seen += process.stderr.readlines()
    return process.wait(), "".join(seen)


def cache_keys(cache: Path) -> set[str]:
    """Keys of every committed shard, checking that each reads whole (features and keys agree)."""
    found = set()
    for keys_file in cache.rglob("*.keys.npy"):
        keys = np.load(keys_file)
        features = np.load(keys_file.with_name(keys_file.name.replace(".keys.npy", ".f32.npy")))
        assert features.shape[0] == keys.shape[0] and np.isfinite(features).all()
        found |= {key.decode() for key in keys.tolist()}
    return found


def assert_nothing_half_written(out: Path) -> None:
    for number, version in fs.numbered(out / "saved_model").items():
        assert (version / "variables" / "variables.index").is_file(), f"incomplete version {number}"
    for run_dir in (out / "runs").glob("*"):
        for path in run_dir.glob("*.json"):
            json.loads(path.read_text("utf-8"))
        for path in run_dir.glob("*.csv"):
            assert list(csv.reader(path.open(encoding="utf-8")))[0], path
        assert not list(run_dir.glob(".features-*")), "the scratch feature matrix was left behind"


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("many") / "imgs", colour_set(n=60))


STAGES = [  # (marker on stderr, signal, extra options): each stage of a run, by the line that starts it
    ("found 180 images", signal.SIGINT, []),
    ("to extract", signal.SIGTERM, ["--batch-size", "1"]),
    ("training the new layer", signal.SIGINT, ["--epochs", "100000", "--patience", "100000"]),
    ("exporting the SavedModel", signal.SIGTERM, []),
    ("converting the SavedModel to TFLite", signal.SIGINT, ["--tflite", "float32"]),
]


@pytest.mark.parametrize("marker, signum, extra", STAGES, ids=["scan", "extract", "train", "export", "tflite"])
def test_an_interrupt_at_any_stage_loses_nothing(many_images, fake_module, tmp_path, marker, signum, extra):
    env = child_env(tmp_path)
    code, stderr = interrupt_at(command(many_images, fake_module, tmp_path, *extra), marker, signum, env)
    assert code == (130 if signum == signal.SIGINT else 143), stderr[-2000:]
    assert "Traceback" not in stderr and "Stopped:" in stderr and "skipped" not in stderr
    assert_nothing_half_written(tmp_path / "out")
    before = cache_keys(tmp_path / "cache")
    missing = sum(file_digest(path) not in before for path in many_images.rglob("*.png"))
    again = subprocess.run(command(many_images, fake_module, tmp_path, "--epochs", "3", "--json"),
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["features"] == {"cached": 180 - missing, "extracted": missing}
    assert_nothing_half_written(tmp_path / "out")


def test_a_full_disk_fails_in_one_line_and_keeps_earlier_versions(fake_module, tmp_path):
    images = write_images(tmp_path / "imgs", colour_set(n=8))
    env = child_env(tmp_path)
    first = subprocess.run(command(images, fake_module, tmp_path, "--epochs", "3"), capture_output=True, text=True,
                           env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    cached = cache_keys(tmp_path / "cache")

    def small_disk():  # writes past 64 KB fail with EFBIG, as on a full disk, instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    full = subprocess.run(command(images, fake_module, tmp_path, "--epochs", "3"), capture_output=True, text=True,
                          env=env, preexec_fn=small_disk)
    errors = [line for line in full.stderr.splitlines() if line.startswith("Error:")]
    assert full.returncode == 1 and len(errors) == 1, full.stderr[-3000:]
    assert "cannot write" in errors[0] and "expected free space" in errors[0] and "Traceback" not in full.stderr
    assert sorted(fs.numbered(tmp_path / "out" / "saved_model")) == [1]
    assert_nothing_half_written(tmp_path / "out")
    assert cache_keys(tmp_path / "cache") == cached


def test_two_runs_on_one_folder_at_once_get_their_own_versions(fake_module, tmp_path):
    images = write_images(tmp_path / "imgs", colour_set(n=8))
    env = child_env(tmp_path)
    runs = [subprocess.Popen(command(images, fake_module, tmp_path, "--epochs", "5", "--json"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-1500:] for _, err in outputs]
    versions = sorted(json.loads(out)["version"] for out, _ in outputs)
    assert versions == [1, 2] and sorted(fs.numbered(tmp_path / "out" / "saved_model")) == [1, 2]
    for number in versions:
        assert (tmp_path / "out" / "runs" / str(number) / "report.html").is_file()
    assert_nothing_half_written(tmp_path / "out")
