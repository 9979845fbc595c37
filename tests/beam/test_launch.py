"""Extraction on Apache Beam (DirectRunner, 2 worker processes): the cache it fills is the local one.

Skipped without the `beam` extra, except the CLI's message that asks for it.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import retrain.beam
from fake_data import colour_set, write_images
from retrain.backbone import engines
from retrain.cli import main
from retrain.features.cache import for_module
from retrain.images import preprocess

SIZE = 32
BAD = b"\x89PNG\r\n\x1a\n" + b"\0" * 40  # PNG magic, then nothing a decoder accepts
BROKEN = os.fsdecode(b"broken-\xe9.png")  # a name that is not UTF-8 must survive the report too


@pytest.fixture(scope="module")
def beam_run(fake_module, tmp_path_factory):
    """One 2-worker multi-processing DirectRunner run over 36 colour images, a copy of one and a bad file
with a name that is not UTF-8."""
    pytest.importorskip("apache_beam")
    from retrain.beam import launch

    root = tmp_path_factory.mktemp("beam")
    images = write_images(root / "images", colour_set(12))
    shutil.copy(images / "red" / "000.png", images / "red" / "copy.png")
    (images / "blue" / BROKEN).write_bytes(BAD)
    result = launch.extract(images, root / "cache", str(fake_module), runner="direct", workers=2, image_size=SIZE,
                            batch_size=5, engine="auto")
    return root, images, result


def _module_info(fake_module):
    from retrain.backbone import resolve

    return resolve.load_info(str(fake_module))


def _cache_files(cache_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*"))


def _good(images: Path) -> list[Path]:
    return sorted(p for p in images.rglob("*.png") if p.name != BROKEN)


@pytest.mark.slow
def test_counts_say_what_happened(beam_run):
    _, _, result = beam_run
    assert result["listed"] == 37  # the scan already left the bad file out, with its reason
    assert (result["extracted"], result["duplicates"], result["cached"], result["skipped"]) == (36, 1, 0, 1)
    assert result["entries"] == 36


@pytest.mark.slow
def test_beam_features_equal_a_local_extraction(beam_run, fake_module, tmp_path):
    from retrain.features.extraction import Extractor, extract, file_digest

    root, images, _ = beam_run
    paths = _good(images)
    info = _module_info(fake_module)
    local = extract(Extractor(module=info, image_size=SIZE, engine="tf", cache_dir=None, batch_size=7,
                              max_pixels=10_000_000, workdir=tmp_path), paths).matrix.read(np.arange(len(paths)))
    cache = for_module(root / "cache", info.handle or info.path, info.fingerprint, SIZE, preprocess.PREPROCESS_VERSION)
    cached = np.full_like(local, np.nan)
    for rows, features in cache.read([file_digest(p) for p in paths], list(range(len(paths)))):
        cached[rows] = features
    np.testing.assert_allclose(cached, local, atol=1e-4)


@pytest.mark.slow
def test_a_local_run_afterwards_extracts_nothing_and_writes_nothing(beam_run, fake_module, tmp_path, monkeypatch):
    from retrain.features.extraction import Extractor, extract

    root, images, _ = beam_run
    before = _cache_files(root / "cache")

    def fail(*args, **kwargs):
        raise AssertionError("the backbone ran although Beam cached every feature")
    monkeypatch.setattr(engines, "open_engine", fail)
    result = extract(Extractor(module=_module_info(fake_module), image_size=SIZE, engine="auto",
                               cache_dir=root / "cache", batch_size=5, max_pixels=10_000_000, workdir=tmp_path),
                     _good(images))
    assert (result.cached, result.extracted) == (37, 0) and result.matrix.shape == (37, 8)
    assert np.isfinite(result.matrix.read(np.arange(37))).all()
    assert _cache_files(root / "cache") == before
    assert not [f for f in before if ".beam-run" in f or ".tmp-" in f]


@pytest.mark.slow
def test_a_file_that_does_not_decode_is_skipped_and_named(beam_run):
    _, images, result = beam_run
    (line,) = result["skipped_files"]
    assert line.startswith(f"{images / 'blue' / BROKEN}: ")
    assert "{{" not in line and len(line.splitlines()) == 1


@pytest.mark.slow
def test_a_second_run_from_the_command_line_finds_everything_cached(beam_run, fake_module):
    root, images, _ = beam_run
    before = _cache_files(root / "cache")
    # In-process this time (options after -- win over --workers): the DoFn gets no element.
    result = CliRunner().invoke(main, ["extract", "--images", str(images), "--cache-dir", str(root / "cache"),
                                       "--module", str(fake_module), "--image-size", str(SIZE), "--",
                                       "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert result.exit_code == 0, result.output
    assert "files: 37, cached: 37, duplicates: 0, extracted: 0, skipped: 1" in result.output
    assert _cache_files(root / "cache") == before


def test_extract_without_beam_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # what `import apache_beam` meets when absent
    for name in ("retrain.beam.launch", "retrain.beam.transforms"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(retrain.beam, "launch", raising=False)  # else `from retrain.beam import launch` finds it
    result = CliRunner().invoke(main, ["extract", "--images", str(tmp_path), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert 'pip install "retrain[beam]"' in result.output


def test_pipeline_options_per_runner():
    pytest.importorskip("apache_beam")
    from retrain.beam.launch import pipeline_options

    direct = pipeline_options("direct", None, []).get_all_options()
    assert (direct["runner"], direct["direct_num_workers"], direct["direct_running_mode"]) == \
        ("DirectRunner", 2, "multi_processing")
    flink = pipeline_options("flink", 8, ["--flink_master=host:8081"]).get_all_options()
    assert (flink["runner"], flink["parallelism"], flink["flink_master"]) == ("FlinkRunner", 8, "host:8081")
    dataflow = pipeline_options("dataflow", 4, ["--num_workers=10"]).get_all_options()
    assert dataflow["num_workers"] == 10  # the user's own flags come last and win
