"""The batcher joins requests that queue while a call runs, and a bad request fails alone."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from retrain.serve.batcher import Batcher


class Recorder:
    """Doubles its input; the first call waits for `release`; refuses negative values like a graph would."""

    def __init__(self):
        self.calls: list[int] = []
        self.release, self.entered = threading.Event(), threading.Event()

    def __call__(self, arrays):
        self.calls.append(len(arrays["x"]))
        if len(self.calls) == 1:
            self.entered.set()
            self.release.wait()
        if (arrays["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": arrays["x"] * 2, "n": np.full(len(arrays["x"]), len(arrays["x"]))}


def test_requests_queued_during_a_call_share_the_next_one():
    function = Recorder()
    batcher = Batcher(function, workers=1)
    first = batcher.submit({"x": np.array([1])})
    function.entered.wait()  # the worker is inside the first call: what comes now queues
    rest = [batcher.submit({"x": np.arange(k, k + 2)}) for k in (10, 20, 30)]
    function.release.set()
    assert first.result()["y"].tolist() == [2]
    assert [f.result()["y"].tolist() for f in rest] == [[20, 22], [40, 42], [60, 62]]
    assert [f.result()["n"].tolist() for f in rest] == [[6, 6]] * 3  # all three rode one call of 6 rows
    assert function.calls == [1, 6]
    batcher.close()


def test_a_call_takes_no_more_requests_once_they_hold_max_bytes():
    """Photos go one per call (each core decodes one); small requests still share one."""
    function = Recorder()
    batcher = Batcher(function, workers=1, max_bytes=24)  # three int64 rows
    first = batcher.submit({"x": np.array([1])})
    function.entered.wait()
    large = [batcher.submit({"x": np.arange(k, k + 3)}) for k in (10, 20)]  # 24 bytes each
    small = [batcher.submit({"x": np.array([k])}) for k in (1, 2, 3)]
    function.release.set()
    assert [f.result()["y"].tolist() for f in large] == [[20, 22, 24], [40, 42, 44]]
    assert [f.result()["y"].tolist() for f in small] == [[2], [4], [6]]
    assert first.result()["y"].tolist() == [2]
    assert function.calls == [1, 3, 3, 3]  # each large request alone, the three small ones together
    batcher.close()


def test_a_bad_request_in_a_joined_call_fails_alone():
    function = Recorder()
    batcher = Batcher(function, workers=1)
    first = batcher.submit({"x": np.array([1])})
    function.entered.wait()
    good, bad, other = (batcher.submit({"x": np.array([v])}) for v in (3, -1, 5))
    function.release.set()
    first.result()
    assert good.result()["y"].tolist() == [6] and other.result()["y"].tolist() == [10]
    with pytest.raises(ValueError, match="negative input"):
        bad.result()
    assert function.calls == [1, 3, 1, 1, 1]  # the joined call failed, then each alone
    batcher.close()


def test_inputs_that_cannot_join_are_called_one_by_one_and_close_finishes_the_queue():
    function = Recorder()
    batcher = Batcher(function, workers=2)
    function.release.set()
    futures = [batcher.submit({"x": np.ones((1, k))}) for k in (1, 2, 3)]  # inner shapes differ
    batcher.close()
    assert [f.result()["y"].shape for f in futures] == [(1, 1), (1, 2), (1, 3)]
    assert batcher.submit({"x": np.array([4])}).result()["y"].tolist() == [8]  # after close: answered inline
