"""A big or wrong tree: the scan shows progress on a terminal, stops at the first signal, refuses obvious
wrong roots, and never reads the run's own output as a class."""
from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_data import colour_set, write_images
from retrain import pipeline
from retrain.cli import main
from retrain.config import Config
from retrain.errors import RetrainError
from retrain.inputs import gather, scan


def _big_tree(root: Path, files: int) -> Path:
    """Two classes of `files` paths each: three small PNGs (byte-identical files share a split, so a class needs
    distinct images to be split) and hard links to the first: every path is checked (no symlinks)."""
    write_images(root, {"a": [(1, 2, 3), (4, 5, 6), (7, 8, 9)], "b": [(3, 2, 1), (6, 5, 4), (9, 8, 7)]}, size=8)
    for label in ("a", "b"):
        first = root / label / "000.png"
        for i in range(3, files):
            os.link(first, root / label / f"{i:06d}.png")
    return root


def _run_on_a_terminal(args: list[str], marker: str, signum: int | None) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; send signum once `marker` shows; returns (exit code, output)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(follower)
    seen, sent = b"", False
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if signum is not None and not sent and marker.encode() in seen:
            process.send_signal(signum)
            sent = True
    os.close(leader)
    return process.wait(), seen.decode("utf-8", "replace")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_first_signal_stops_the_scan_at_once(tmp_path, signum, code):
    images = _big_tree(tmp_path / "big", 20_000)
    args = [sys.executable, "-m", "retrain", "--images", str(images), "--output", str(tmp_path / "out"), "--dry-run"]
    returncode, output = _run_on_a_terminal(args, "scanning", signum)
    assert returncode == code, output
    assert "scanning" in output and "found " not in output and "Stopped" in output
    assert not (tmp_path / "out" / "runs" / "1" / "split.csv").exists()


@pytest.mark.slow
def test_progress_shows_on_a_terminal_and_not_in_a_pipe(tmp_path):
    images = _big_tree(tmp_path / "big", 200)
    args = [sys.executable, "-m", "retrain", "--images", str(images), "--output", str(tmp_path / "out"), "--dry-run"]
    returncode, output = _run_on_a_terminal(args, "", None)
    assert returncode == 0 and "scanning " in output and "found 400 images" in output, output
    piped = subprocess.run(args + ["--output", str(tmp_path / "out2")], capture_output=True, text=True, check=False)
    assert piped.returncode == 0 and "scanning" not in piped.stderr and "found 400 images" in piped.stderr


@pytest.mark.parametrize("root", ["/", str(Path.home()), str(Path.home().parent)])
def test_obviously_wrong_roots_are_refused_with_one_line_before_any_walk(root):
    with pytest.raises(RetrainError, match=r"^--images: .* is (the root of the file system|your home folder|a "
                                           r"folder above your home folder); expected a folder with one sub-folder"):
        scan.scan(Path(root), 10**6)


def test_a_folder_of_mostly_non_images_gets_a_warning(tmp_path, caplog):
    images = write_images(tmp_path / "images", {"a": [(1, 1, 1)] * 2, "b": [(9, 9, 9)] * 2}, size=8)
    for i in range(scan.MANY_NON_IMAGES):
        (images / "a" / f"notes-{i}.txt").write_text("text")
    scan.scan(images, 10**6)
    assert any("files are not images" in r.getMessage() and "is " in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("option, inside", [("output", "out"), ("output", ""), ("tensorboard", "a/tb"),
                                            ("cache_dir", "cache"), ("export_module", "b/module")])
def test_a_folder_the_run_writes_inside_images_is_refused_with_one_line(tmp_path, option, inside):
    images = write_images(tmp_path / "images", colour_set(3))
    config = Config(images=images, dry_run=True, **({"output": tmp_path / "elsewhere"} | {option: images / inside}))
    with pytest.raises(RetrainError, match=f"^--{option.replace('_', '-')}: .* is inside --images"):
        pipeline.run(config)
    result = CliRunner().invoke(main, ["--images", str(images), f"--{option.replace('_', '-')}",
                                       str(images / inside), "--dry-run"]
                                + (["--output", str(tmp_path / "elsewhere")] if option != "output" else []))
    assert result.exit_code == 1 and "is inside --images" in result.output.splitlines()[-1], result.output
    assert not (images / inside / "runs").exists()


def test_an_output_beside_images_is_fine(tmp_path):
    images = write_images(tmp_path / "images", colour_set(3))
    result = pipeline.run(Config(images=images, output=tmp_path / "images-out", dry_run=True,
                                 tensorboard=tmp_path / "tb", test_images=write_images(tmp_path / "t", colour_set(2))))
    assert len(result.labels) == 3 and (result.run_dir / "split.csv").exists()


def test_a_folder_written_inside_test_images_is_refused_too(tmp_path):
    tests = write_images(tmp_path / "tests", colour_set(2))
    with pytest.raises(RetrainError, match="^--output: .* is inside --test-images"):
        gather.check_places({"--images": tmp_path / "images", "--test-images": tests}, {"--output": tests / "runs"})
