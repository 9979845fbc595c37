"""Head training on features held in a memory-mapped file, in several chunks per epoch."""
from __future__ import annotations

import numpy as np

from retrain import head_training
from retrain.config import Config


def _clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters in 16 dimensions: features [n, 16], labels [n]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    centres = np.eye(3, 16, dtype=np.float32) * 6
    return (centres[labels] + rng.normal(size=(n, 16))).astype(np.float32), labels


def test_memmapped_features_in_many_chunks_train_and_validate_the_right_rows(tmp_path, monkeypatch):
    features, labels = _clusters(900, seed=1)
    # Validation rows get shuffled labels: reading them from the wrong place would score near 1.0.
    labels[700:] = np.random.default_rng(2).permutation(labels[700:])
    path = tmp_path / "features.npy"
    np.save(path, features)
    monkeypatch.setattr(head_training, "CHUNK_ROWS", 128)  # several chunks per epoch, reshuffled
    head, epoch, val_acc = head_training.fit(np.load(path, mmap_mode="r"), labels, 700, 3,
                                             Config(epochs=15, patience=15, seed=0, learning_rate=0.05))
    clean = np.array(head(features[:700], training=False)).argmax(1) == labels[:700]
    assert clean.mean() > 0.97
    assert val_acc < 0.6 and 1 <= epoch <= 15


def test_clean_validation_rows_score_high(tmp_path):
    features, labels = _clusters(600, seed=3)
    path = tmp_path / "features.npy"
    np.save(path, features)
    _, _, val_acc = head_training.fit(np.load(path, mmap_mode="r"), labels, 480, 3, Config(epochs=30, seed=0, learning_rate=0.05))
    assert val_acc > 0.97
