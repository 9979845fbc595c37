"""The run folder <output>/runs/N: its number, and the small files every run writes into it."""
from __future__ import annotations

import json
from pathlib import Path

from retrain import fs
from retrain.errors import RetrainError


def reserve(output: Path) -> tuple[int, Path]:
    """Create <output>/runs/N for the next free N (one more than any earlier run or version) and
    return (N, that folder).

    mkdir is atomic, so two runs started at once never share a number, and N is also the run's
    SavedModel version, so they never write the same version either. Checked before any training.
    """
    output = Path(output)
    try:
        for sub in ("runs", "saved_model"):
            (output / sub).mkdir(parents=True, exist_ok=True)
        version = max([*fs.numbered(output / "runs"), *fs.numbered(output / "saved_model")], default=0) + 1
        while True:
            try:
                (output / "runs" / str(version)).mkdir()
                break
            except FileExistsError:
                version += 1
        run_dir = output / "runs" / str(version)
        fs.write_atomic(run_dir / ".write-check", "ok").unlink()
    except OSError as e:
        raise RetrainError(f"--output: cannot write to {output} ({e.strerror or e}); "
                           "expected a writable folder") from None
    return version, run_dir


def write_labels(run_dir: Path, labels: list[str]) -> None:
    """labels.txt: one label per line, in the order of the model's outputs."""
    fs.write_atomic(Path(run_dir) / "labels.txt", "".join(f"{label}\n" for label in labels))


def write_json(path: Path, value: dict) -> None:
    fs.write_atomic(Path(path), json.dumps(value, indent=2, ensure_ascii=False) + "\n")
