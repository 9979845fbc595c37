"""TensorBoard scalars (read back from the event files) and the latency of a real export."""
from __future__ import annotations

import pytest

from retrain.reports.tensorboard import median_latency_ms, tensorboard_log

HISTORY = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 10, "val_loss": 1.5 / e, "val_accuracy": 0.4 + e / 10}
           for e in range(1, 4)]


def scalars(folder) -> dict[tuple[str, int], float]:
    """{(tag, step): value} of the scalars TensorBoard's own event reader finds under folder."""
    import tensorflow as tf

    accumulator = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_accumulator")
    events = accumulator.EventAccumulator(str(folder))
    events.Reload()
    return {(tag, point.step): float(tf.make_ndarray(point.tensor_proto))
            for tag in events.PluginTagToContent("scalars") for point in events.Tensors(tag)}


def test_tensorboard_scalars_per_epoch_and_old_logs_kept(tmp_path):
    (tmp_path / "logs" / "mine").mkdir(parents=True)
    (tmp_path / "logs" / "mine" / "keep.txt").write_text("earlier")
    first = tensorboard_log(tmp_path / "logs", HISTORY)
    second = tensorboard_log(tmp_path / "logs", HISTORY[:1])
    assert (first.name, second.name) == ("run-1", "run-2")
    assert (tmp_path / "logs" / "mine" / "keep.txt").read_text() == "earlier"
    train, validation = scalars(first / "train"), scalars(first / "validation")
    assert train[("epoch_loss", 2)] == pytest.approx(0.5) and train[("epoch_accuracy", 3)] == pytest.approx(0.8)
    assert validation[("epoch_loss", 3)] == pytest.approx(0.5) and len(validation) == 6
    assert len(scalars(second / "train")) == 2


def test_median_latency_of_the_export(serving_export):
    images = [serving_export.samples[name] for name in ("jpeg_large", "png_small")]
    latency = median_latency_ms(serving_export.version_dir, images, repeats=3)
    assert 0.0 < latency < 60_000.0
    with pytest.raises(ValueError):
        median_latency_ms(serving_export.version_dir, [])
