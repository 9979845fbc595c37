"""The server hands its request buffers back to the system every TRIM_BYTES of request bodies."""
from __future__ import annotations

from retrain.serve import memory


def test_request_buffers_are_handed_back_every_trim_bytes(monkeypatch):
    class Libc:
        trims = 0

        def malloc_trim(self, pad):
            self.trims += 1

    libc = Libc()
    monkeypatch.setattr(memory, "_libc", libc)
    monkeypatch.setattr(memory, "_since_trim", 0)
    for _ in range(5):
        memory.request_done(memory.TRIM_BYTES // 2)
    assert libc.trims == 2  # after the second and the fourth request
