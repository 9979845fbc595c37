"""The content-addressed feature cache: namespaces, shards, torn writes and concurrent writers, local and via gfile."""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from retrain.features.cache import FeatureCache, ShardWriter, namespace

DIM = 6


def _key(i: int) -> str:
    return f"{i:064x}"


def _rows(keys: list[int]) -> np.ndarray:
    """A deterministic feature row per key, so any writer writes the same value for the same key."""
    return np.array([np.arange(DIM, dtype=np.float32) + k for k in keys], np.float32)


def _write(folder: Path | str, keys: list[int], shard_rows: int = 4) -> None:
    with ShardWriter(folder, shard_rows) as writer:
        for start in range(0, len(keys), 3):
            chunk = keys[start:start + 3]
            writer.add([_key(k) for k in chunk], _rows(chunk))


def _read(cache: FeatureCache, keys: list[int]) -> np.ndarray:
    out = np.full([len(keys), DIM], np.nan, np.float32)
    for rows, features in cache.read([_key(k) for k in keys], list(range(len(keys)))):
        out[rows] = features
    return out


def test_namespace_changes_with_everything_that_changes_features():
    base = namespace("hub/module", "fp1", 224, 1)
    assert namespace("hub/module", "fp1", 224, 1) == base
    others = {namespace("hub/other", "fp1", 224, 1), namespace("hub/module", "fp2", 224, 1),
              namespace("hub/module", "fp1", 192, 1), namespace("hub/module", "fp1", 224, 2)}
    assert base not in others and len(others) == 4


def test_rows_come_back_in_the_order_asked_across_shards(tmp_path):
    _write(tmp_path / "ns", list(range(10)))  # shards of 4, 4, 2 rows... written 3 at a time
    cache = FeatureCache(tmp_path, "ns")
    assert len(cache) == 10 and cache.dim == DIM
    wanted = [9, 0, 4, 4, 7, 1]
    np.testing.assert_array_equal(_read(cache, wanted), _rows(wanted))
    assert _key(3) in cache and _key(10) not in cache


def test_empty_namespace_has_no_dim(tmp_path):
    cache = FeatureCache(tmp_path, "ns", describe={"module": "m"})
    assert len(cache) == 0 and cache.dim is None
    assert (tmp_path / "ns" / "namespace.json").exists()


def _tear(folder: Path) -> None:
    """What runs killed at each moment of a shard write leave behind."""
    np.save(folder / "dead-00000.f32.npy", _rows([100, 101]))  # features committed, keys not yet
    np.save(folder / "dead-00001.keys.npy", np.array([_key(102)], "S64"))  # keys without features
    np.save(folder / "dead-00002.f32.npy", _rows([103, 104]))
    data = (folder / "dead-00002.f32.npy").read_bytes()
    (folder / "dead-00002.f32.npy").write_bytes(data[: len(data) - 10])  # truncated features
    np.save(folder / "dead-00002.keys.npy", np.array([_key(103), _key(104)], "S64"))
    np.save(folder / "dead-00003.f32.npy", _rows([105, 106]))  # row count disagrees with keys
    np.save(folder / "dead-00003.keys.npy", np.array([_key(105)], "S64"))
    (folder / ".tmp-abc-dead-00004.keys.npy").write_bytes(b"\x93NUMPY garbage")
    (folder / "dead-00005.keys.npy").write_bytes(b"\x93NUM")  # truncated keys


def test_torn_shards_are_ignored_and_good_ones_kept(tmp_path):
    _write(tmp_path / "ns", [1, 2, 3])
    _tear(tmp_path / "ns")
    cache = FeatureCache(tmp_path, "ns")
    assert len(cache) == 3
    assert all(_key(k) not in cache for k in range(100, 107))
    np.testing.assert_array_equal(_read(cache, [3, 1]), _rows([3, 1]))


def test_stale_leftovers_are_swept_and_fresh_ones_left_alone(tmp_path):
    folder = tmp_path / "ns"
    folder.mkdir()
    _tear(folder)
    old = os.path.getmtime(folder / "dead-00000.f32.npy") - 3 * 24 * 3600
    for name in ["dead-00000.f32.npy", ".tmp-abc-dead-00004.keys.npy"]:
        os.utime(folder / name, (old, old))
    (folder / ".tmp-fresh-x.f32.npy").write_bytes(b"")  # a live writer's temp file
    FeatureCache(tmp_path, "ns")
    assert not (folder / "dead-00000.f32.npy").exists()
    assert not (folder / ".tmp-abc-dead-00004.keys.npy").exists()
    assert (folder / ".tmp-fresh-x.f32.npy").exists()


def test_a_failed_run_keeps_the_rows_it_computed(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "ns", shard_rows=100) as writer:
        writer.add([_key(1), _key(2)], _rows([1, 2]))
        raise RuntimeError("engine died")
    assert len(FeatureCache(tmp_path, "ns")) == 2


def _writer_process(folder: str, keys: list[int]) -> None:
    _write(folder if "://" in folder else Path(folder), keys, shard_rows=5)


def test_two_concurrent_writers_leave_a_readable_cache(tmp_path):
    folder = tmp_path / "ns"
    folder.mkdir()
    spawn = multiprocessing.get_context("spawn")  # TensorFlow may be loaded here: fork is unsafe
    jobs = [spawn.Process(target=_writer_process, args=(str(folder), list(range(a, b))))
            for a, b in [(0, 300), (150, 450)]]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
        assert job.exitcode == 0
    cache = FeatureCache(tmp_path, "ns")
    assert len(cache) == 450
    keys = list(range(450))
    np.testing.assert_array_equal(_read(cache, keys), _rows(keys))
    assert not list(folder.glob(".tmp-*"))


def test_index_of_60000_entries_loads_fast(tmp_path):
    import time

    folder = tmp_path / "ns"
    folder.mkdir()
    for shard in range(30):
        keys = range(shard * 2000, (shard + 1) * 2000)
        # Sparse files: the index must not read features, so their size costs nothing here.
        np.lib.format.open_memmap(folder / f"w-{shard:05d}.f32.npy", "w+", np.float32, (2000, 1280))
        np.save(folder / f"w-{shard:05d}.keys.npy", np.array([_key(k) for k in keys], "S64"))
    start = time.perf_counter()
    cache = FeatureCache(tmp_path, "ns")
    assert len(cache) == 60_000
    assert time.perf_counter() - start < 1.0


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_shards_are_unmapped_after_reading(tmp_path):
    """A large cache must not stay resident: only the result keeps the features."""
    _write(tmp_path / "ns", list(range(12)))
    cache = FeatureCache(tmp_path, "ns")
    _read(cache, list(range(12)))
    assert str(tmp_path / "ns") not in Path("/proc/self/maps").read_text()


# The same cache through tf.io.gfile: file:// is gfile's local filesystem, so processes can share it and
# the test can tear files with plain os calls; ram:// is an in-memory filesystem, as remote as it gets here.

def test_a_cache_with_a_scheme_round_trips_through_gfile(tmp_path):
    root = f"file://{tmp_path}"
    _write(f"{root}/ns", list(range(10)))
    cache = FeatureCache(root, "ns", describe={"module": "m"})
    assert isinstance(cache.folder, str) and cache.folder.startswith("file://")
    assert len(cache) == 10 and cache.dim == DIM
    wanted = [9, 0, 4, 4, 7, 1]
    np.testing.assert_array_equal(_read(cache, wanted), _rows(wanted))
    assert (tmp_path / "ns" / "namespace.json").exists() and not list((tmp_path / "ns").glob(".tmp-*"))
    assert len(cache.keys_files) == 2 and all(str(f).endswith(".keys.npy") for f in cache.keys_files)


def test_torn_shards_are_ignored_through_gfile_too(tmp_path):
    _write(tmp_path / "ns", [1, 2, 3])
    _tear(tmp_path / "ns")
    cache = FeatureCache(f"file://{tmp_path}", "ns")
    assert len(cache) == 3 and all(_key(k) not in cache for k in range(100, 107))
    np.testing.assert_array_equal(_read(cache, [3, 1]), _rows([3, 1]))


def test_in_memory_filesystem_and_stale_sweep(tmp_path):
    import tensorflow as tf

    root = f"ram://cache-{os.getpid()}-{tmp_path.name}"
    _write(f"{root}/ns", [5, 6, 7])
    tf.io.gfile.GFile(f"{root}/ns/.tmp-dead-x.keys.npy", "wb").write(b"half")
    cache = FeatureCache(root, "ns")
    assert len(cache) == 3
    np.testing.assert_array_equal(_read(cache, [7, 5]), _rows([7, 5]))
    # ram:// keeps no modification times (0): unknown age must never count as stale.
    assert tf.io.gfile.exists(f"{root}/ns/.tmp-dead-x.keys.npy")


def test_a_commit_mark_is_never_replaced(tmp_path):
    from retrain import fs

    for folder in (tmp_path, f"file://{tmp_path}"):
        target = fs.join(folder, "a.keys.npy")
        fs.publish(target, b"first", overwrite=False)
        with pytest.raises(OSError):
            fs.publish(target, b"second", overwrite=False)
        assert (tmp_path / "a.keys.npy").read_bytes() == b"first"
        assert not list(tmp_path.glob(".tmp-*"))
        (tmp_path / "a.keys.npy").unlink()


@pytest.mark.slow  # four processes importing TensorFlow: ~15 s on 2 cores
def test_four_concurrent_gfile_writers_leave_a_readable_cache(tmp_path):
    folder = f"file://{tmp_path}/ns"
    spawn = multiprocessing.get_context("spawn")
    ranges = [(0, 200), (100, 300), (250, 450), (0, 450)]
    jobs = [spawn.Process(target=_writer_process, args=(folder, list(range(a, b)))) for a, b in ranges]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(120)
        assert job.exitcode == 0
    cache = FeatureCache(f"file://{tmp_path}", "ns")
    keys = list(range(450))
    assert len(cache) == 450
    np.testing.assert_array_equal(_read(cache, keys), _rows(keys))
    assert not list((tmp_path / "ns").glob(".tmp-*"))
