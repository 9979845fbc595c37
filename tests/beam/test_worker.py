"""What a Beam worker runs without Beam: decoding that skips bad files, and the module check on a worker."""
from __future__ import annotations

import numpy as np
import pytest

from fake_data import write_images
from retrain.backbone import resolve
from retrain.beam.worker import WorkerSpec, decode_items, open_worker_engine, worker_module
from retrain.errors import RetrainError

SIZE = 16


def _spec(module_path: str, fingerprint: str, handle: str | None = None) -> WorkerSpec:
    return WorkerSpec("unused", handle or module_path, module_path, fingerprint, SIZE, 4, 1_000_000, "tf")


def test_bad_files_are_skipped_with_a_reason_and_the_rest_kept(fake_module, tmp_path):
    paths = sorted(write_images(tmp_path, {"a": [(255, 0, 0), (0, 0, 255)]}, size=8).rglob("*.png"))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    items = [("k0", str(paths[0])), ("kbad", str(tmp_path / "bad.png")), ("kgone", str(tmp_path / "gone.png")),
             ("k1", str(paths[1]))]
    engine, decoder = open_worker_engine(_spec(str(fake_module), resolve.fingerprint(fake_module)))
    keys, images, skipped = decode_items(decoder, items)
    assert keys == ["k0", "k1"] and images.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_allclose(images[0, 0, 0], [1, 0, 0], atol=1e-6)
    # in path order, whichever stage (reading, decoding) found them
    assert [line.split(": ")[0] for line in skipped] == [str(tmp_path / "bad.png"), str(tmp_path / "gone.png")]
    assert all("{{" not in line and "\n" not in line for line in skipped)
    assert engine(images).shape == (2, 8)


def test_all_good_batch_decodes_in_one_call(fake_module, tmp_path):
    paths = sorted(write_images(tmp_path, {"a": [(9, 9, 9)] * 3}, size=8).rglob("*.png"))
    _, decoder = open_worker_engine(_spec(str(fake_module), resolve.fingerprint(fake_module)))
    keys, images, skipped = decode_items(decoder, [(str(i), str(p)) for i, p in enumerate(paths)])
    assert keys == ["0", "1", "2"] and images.shape == (3, SIZE, SIZE, 3) and skipped == []


def test_a_worker_without_the_launchers_path_resolves_the_handle(fake_module):
    fingerprint = resolve.fingerprint(fake_module)
    found = worker_module(_spec("/nowhere/module", fingerprint, handle=str(fake_module)))
    assert (found.path, found.fingerprint) == (str(fake_module), fingerprint)


def test_a_worker_that_resolves_other_weights_refuses(fake_module):
    with pytest.raises(RetrainError, match="fingerprint"):
        worker_module(_spec("/nowhere/module", "0" * 32, handle=str(fake_module)))
