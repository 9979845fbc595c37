"""FeatureMatrix: the float32 [rows, D] feature vectors of one run, in memory or in a file."""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MEMMAP_BYTES = 64 << 20  # matrices larger than this live in a .npy file under the workdir, not in RAM


class FeatureMatrix:
    """float32 [rows, dim], written with put() and read with read(); rows nobody put are zeros.

    Small matrices are a NumPy array. Large ones are a .npy file under `workdir` (the caller owns the
    folder and deletes it): put() writes with positioned writes and read() copies rows out through a
    mapping that lives only for that call, so a pass over 60,000 rows does not leave 300 MB counted
    as resident, as indexing a long-lived np.memmap would.
    """

    stable = True  # the same rows read the same every time: a trainer may keep them in memory

    def __init__(self, rows: int, dim: int, workdir: Path) -> None:
        self.shape = (rows, dim)
        self.path: Path | None = None
        if rows * dim * 4 <= MEMMAP_BYTES:
            self._array = np.zeros(self.shape, np.float32)
            return
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.path = Path(workdir) / f"features-{uuid.uuid4().hex[:8]}.npy"
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=self.shape)
        self._offset = header.offset
        del header  # a sized, sparse file with its .npy header; no mapping is kept
        log.debug("feature matrix %s in %s", self.shape, self.path)

    @property
    def dim(self) -> int:
        return self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def put(self, rows: np.ndarray, features: np.ndarray) -> None:
        """matrix[rows[i]] = features[i] for features float32 [len(rows), dim]."""
        rows = np.asarray(rows, np.int64)
        if self.path is None:
            self._array[rows] = features
            return
        row_bytes = self.shape[1] * 4
        with open(self.path, "r+b") as handle:
            for row, feature in zip(rows.tolist(), np.ascontiguousarray(features, np.float32)):
                os.pwrite(handle.fileno(), feature.tobytes(), self._offset + row * row_bytes)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """A float32 [len(rows), dim] copy of the rows, in the order given."""
        rows = np.asarray(rows, np.int64)
        if self.path is None:
            return self._array[rows]
        mapping = np.load(self.path, mmap_mode="r")
        try:
            return np.array(mapping[rows], np.float32)
        finally:
            del mapping

    def chunks(self, rows: np.ndarray, size: int):
        """Yield (rows of the chunk, float32 [<= size, dim]) covering `rows`, size rows at a time.

        Each chunk's rows come back sorted, so its reads go through the file front to back.
        """
        rows = np.asarray(rows, np.int64)
        for start in range(0, len(rows), size):
            part = np.sort(rows[start:start + size])
            yield part, self.read(part)
