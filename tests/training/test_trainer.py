"""The one head-training loop: chunks from a file-backed matrix, early stopping, class weights, history."""
from __future__ import annotations

import numpy as np
import pytest

from retrain.features import matrix
from retrain.training import trainer


def _clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters in 16 dimensions: features [n, 16], labels [n]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    centres = np.eye(3, 16, dtype=np.float32) * 6
    return (centres[labels] + rng.normal(size=(n, 16))).astype(np.float32), labels


def _matrix(features: np.ndarray, workdir) -> matrix.FeatureMatrix:
    m = matrix.FeatureMatrix(*features.shape, workdir)
    m.put(np.arange(len(features)), features)
    return m


def _train(source, labels, n_train, **overrides):
    settings = dict(dropout=0.2, learning_rate=0.05, batch_size=64, epochs=30, patience=30, seed=0) | overrides
    return trainer.train_head(source, labels, np.arange(n_train), np.arange(n_train, len(labels)), 3, **settings)


def test_file_backed_features_in_many_chunks_train_and_validate_the_right_rows(tmp_path, monkeypatch):
    features, labels = _clusters(900, seed=1)
    # Validation rows get shuffled labels: reading them from the wrong place would score near 1.0.
    labels[700:] = np.random.default_rng(2).permutation(labels[700:])
    monkeypatch.setattr(matrix, "MEMMAP_BYTES", 0)
    monkeypatch.setattr(trainer, "CHUNK_ROWS", 128)  # several chunks per epoch, reshuffled
    source = _matrix(features, tmp_path)
    assert source.path is not None
    result = _train(source, labels, 700, epochs=15, patience=15)
    clean = np.array(result.head(features[:700], training=False)).argmax(1) == labels[:700]
    assert clean.mean() > 0.97
    assert result.val_accuracy < 0.6 and 1 <= result.epoch <= 15


def test_clean_validation_rows_score_high_and_history_has_every_epoch(tmp_path):
    features, labels = _clusters(600, seed=3)
    result = _train(_matrix(features, tmp_path), labels, 480)
    assert result.val_accuracy > 0.97
    assert [row["epoch"] for row in result.history] == list(range(1, len(result.history) + 1))
    assert set(result.history[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    kept = result.history[result.epoch - 1]
    assert kept["val_loss"] == pytest.approx(result.val_loss) == min(r["val_loss"] for r in result.history)


def test_early_stopping_stops_after_patience_epochs_without_progress(tmp_path):
    features, labels = _clusters(300, seed=4)
    labels = np.random.default_rng(5).permutation(labels)  # nothing to learn: validation loss soon rises
    result = _train(_matrix(features, tmp_path), labels, 200, epochs=200, patience=3, learning_rate=0.5)
    assert len(result.history) == result.epoch + 3 < 200


def test_class_weights_tip_the_balance_towards_the_weighted_class(tmp_path):
    rng = np.random.default_rng(6)
    # Two overlapping classes: where they overlap, weights decide which one wins.
    features = np.concatenate([rng.normal(0, 1, (400, 16)), rng.normal(0.5, 1, (400, 16))]).astype(np.float32)
    labels = np.repeat([0, 1], 400).astype(np.int32)
    order = rng.permutation(800)
    features, labels = features[order], labels[order]
    source = _matrix(features, tmp_path)
    plain = _train(source, labels, 600, epochs=20)
    weighted = _train(source, labels, 600, epochs=20, class_weights=np.array([1.0, 10.0, 1.0]))

    def share_of_class_1(result):
        return np.mean(np.array(result.head(features, training=False)).argmax(1) == 1)

    assert share_of_class_1(weighted) > share_of_class_1(plain) + 0.2


def test_with_views_each_pass_takes_every_image_once_and_one_of_its_views(tmp_path):
    n, views = 5, 3
    features = np.repeat(np.arange(n * (1 + views), dtype=np.float32)[:, None], 2, axis=1)  # row i holds i
    rows = np.column_stack([np.arange(n)] + [n * (1 + v) + np.arange(n) for v in range(views)])
    chunks = trainer._Chunks(_matrix(features, tmp_path), np.arange(len(features)), rows, np.random.default_rng(0))
    drawn = set()
    for _ in range(20):
        passed = [(x.numpy(), y.numpy()) for x, y in chunks]
        assert all((x[:, 0] == y).all() for x, y in passed)  # features stay with their rows
        seen = np.concatenate([y for _, y in passed])
        assert sorted(seen[seen < n].tolist()) == list(range(n))
        picks = seen[seen >= n]
        assert sorted((picks % n).tolist()) == list(range(n))  # one view of each image per pass
        drawn |= set(picks.tolist())
    assert drawn == set(range(n, n * (1 + views)))  # and every view gets its turn


def test_score_matches_the_validation_loss_of_the_kept_epoch(tmp_path):
    features, labels = _clusters(400, seed=7)
    source = _matrix(features, tmp_path)
    result = _train(source, labels, 300, epochs=10)
    loss, accuracy = trainer.score(result.head, source, labels, np.arange(300, 400))
    assert loss == pytest.approx(result.val_loss, rel=1e-4) and accuracy == pytest.approx(result.val_accuracy)
    assert all(np.isnan(trainer.score(result.head, source, labels, np.arange(0))))  # no rows: no number
