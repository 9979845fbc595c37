"""retrain.reports.run_folder: run folders are numbered and checked without stepping on a run beside them."""
from __future__ import annotations

import pytest

from retrain.errors import RetrainError
from retrain.reports import run_folder


def test_the_write_check_leaves_another_runs_probe_alone(tmp_path):
    other = tmp_path / ".write-check"  # the name every run used to probe with, mid-check in another run
    other.write_text("ok")
    run_folder.writable(tmp_path, "--cache-dir")
    assert other.read_text() == "ok" and sorted(p.name for p in tmp_path.iterdir()) == [".write-check"]


def test_an_unwritable_folder_is_one_error_naming_the_option(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RetrainError, match="--cache-dir: cannot write to .*expected a writable folder"):
        run_folder.writable(tmp_path / "file" / "cache", "--cache-dir")


def test_reserve_numbers_runs_after_every_earlier_run_and_version(tmp_path):
    (tmp_path / "saved_model" / "4").mkdir(parents=True)
    assert run_folder.reserve(tmp_path) == (5, tmp_path / "runs" / "5")
    assert run_folder.reserve(tmp_path)[0] == 6
