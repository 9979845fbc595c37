"""The report parts that need TensorFlow (imported inside each function): TensorBoard scalars, latency."""
from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

from retrain import fs

log = logging.getLogger(__name__)
SCALARS = ("loss", "accuracy")  # history keys of training; "val_" + key for validation


def new_log_folder(log_dir: Path) -> Path:
    """A fresh run-<n> folder under log_dir (n one more than any there); existing logs are never touched."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[4:]) for p in log_dir.iterdir() if p.name.startswith("run-") and p.name[4:].isdigit()]
    return fs.make_numbered(log_dir, max(taken, default=0) + 1, "run-")[1]


def tensorboard_log(log_dir: Path, history: list[dict]) -> Path:
    """Write epoch scalars `epoch_loss` and `epoch_accuracy` under <run>/train and <run>/validation.

    <run> (returned) is a new run-<n> folder under log_dir, so TensorBoard pointed at log_dir shows
    every run and nothing earlier is deleted or overwritten. history: dicts with epoch, loss, accuracy,
    val_loss, val_accuracy (missing values are skipped). Uses TensorFlow's own summary writer and
    tags the values for TensorBoard's scalars plugin, so the tensorboard package is needed only to view.
    """
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    scalar = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    run = new_log_folder(log_dir)
    for side, prefix in (("train", ""), ("validation", "val_")):
        writer = tf.summary.create_file_writer(str(run / side))
        with writer.as_default():
            for entry in history:
                for key in SCALARS:
                    if entry.get(prefix + key) is not None:
                        tf.summary.write(f"epoch_{key}", tf.constant(float(entry[prefix + key]), tf.float32),
                                         step=int(entry["epoch"]), metadata=scalar)
        writer.close()
    log.info("TensorBoard scalars of %d epochs in %s", len(history), run)
    return run


def median_latency_ms(version_dir: Path, image_bytes_list: list[bytes], repeats: int = 5, serve=None) -> float:
    """Median wall time in milliseconds of one single-image `serving_default` call on the exported model.

    version_dir: saved_model/N (input `image_bytes`, string [N]). Each image is sent `repeats` times
    after one warm-up call per image (the first calls trace and allocate); needs at least one image.
    serve: the version's loaded `serving_default` signature, when the caller has it (saves a load).
    """
    import tensorflow as tf

    if not image_bytes_list:
        raise ValueError("median_latency_ms needs at least one image")
    serve = serve or tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    requests = [tf.constant([raw]) for raw in image_bytes_list]
    for request in requests:
        serve(image_bytes=request)["scores"].numpy()
    times = []
    for _ in range(max(1, repeats)):
        for request in requests:
            start = time.perf_counter()
            serve(image_bytes=request)["scores"].numpy()
            times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))
