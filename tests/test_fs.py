"""retrain.fs: files and folders appear whole or not at all; stale temps go; numbered versions."""
from __future__ import annotations

import os
import time

import pytest

from retrain import fs


def test_atomic_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), fs.atomic_file(target) as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    fs.write_atomic(target, "new ✓")
    assert target.read_text("utf-8") == "new ✓" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_staged_dir_publishes_by_rename_and_never_overwrites(tmp_path):
    final = tmp_path / "base" / "7"
    with fs.staged_dir(final) as staging:
        assert staging.parent == final.parent and staging.name.startswith(fs.TEMP_PREFIX)
        (staging / "saved_model.pb").write_bytes(b"x")
        assert not final.exists()
    assert (final / "saved_model.pb").read_bytes() == b"x"
    with pytest.raises(fs.AlreadyThere), fs.staged_dir(final) as staging:
        (staging / "saved_model.pb").write_bytes(b"other")
    assert (final / "saved_model.pb").read_bytes() == b"x"
    assert sorted(p.name for p in final.parent.iterdir()) == ["7"]


def test_staged_dir_cleans_up_after_an_error(tmp_path):
    with pytest.raises(KeyboardInterrupt), fs.staged_dir(tmp_path / "1") as staging:
        (staging / "partial").write_bytes(b"")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_old_temps(tmp_path):
    old, fresh, kept = tmp_path / ".tmp-1-a-x", tmp_path / ".tmp-2-b-y", tmp_path / "x"
    (old / "inner").mkdir(parents=True)
    fresh.write_bytes(b"")
    kept.write_bytes(b"")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert fs.sweep_stale(tmp_path, older_than_s=3600) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, "x"]


def test_numbered_children(tmp_path):
    for name in ["1", "10", "2", "latest", ".tmp-3", "04"]:
        (tmp_path / name).mkdir()
    assert sorted(fs.numbered(tmp_path)) == [1, 2, 4, 10]
    assert fs.numbered(tmp_path / "missing") == {}


def test_make_numbered_takes_the_first_free_number_from_start(tmp_path):
    (tmp_path / "run-3").mkdir()
    assert fs.make_numbered(tmp_path, 3, "run-") == (4, tmp_path / "run-4")
    assert fs.make_numbered(tmp_path, 1, "run-") == (1, tmp_path / "run-1")
    assert fs.make_numbered(tmp_path, 1, "run-")[0] == 2 and (tmp_path / "run-2").is_dir()
