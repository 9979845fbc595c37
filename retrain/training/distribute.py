"""tf.distribute for phase-2 fine-tuning: which strategy, made once at start-up.

The new layer on cached features trains in one process (milliseconds per epoch); only phase 2 runs
through the backbone and is worth spreading. `mirrored` uses every GPU of this machine (one CPU replica
without one); `multi-worker` joins the workers named in TF_CONFIG, each running the same command with its
own --output (the chief's, task 0, is the one to serve). Every worker reads the same global batches in
the same order and each replica trains on its share of each, so the all-reduced gradients are the
single-process ones and every worker takes the same early-stopping decisions without talking about them.
"""
from __future__ import annotations

import json
import logging
import os

from retrain.errors import RetrainError

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi-worker")
_made: list = []


def make(name: str):
    """Create the strategy (before any other TensorFlow work: collective ops are set up at start-up)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise RetrainError(f"--strategy: found {name!r}, expected one of {', '.join(STRATEGIES)}")
    if name == "multi-worker" and "worker" not in json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {}):
        raise RetrainError("--strategy multi-worker: found no TF_CONFIG naming the workers; expected "
                           'TF_CONFIG={"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}')
    strategy = {"default": tf.distribute.get_strategy, "mirrored": tf.distribute.MirroredStrategy,
                "multi-worker": tf.distribute.MultiWorkerMirroredStrategy}[name]()
    log.info("phase 2 runs on %d replica(s) (--strategy %s)", strategy.num_replicas_in_sync, name)
    _made[:] = [strategy]
    return strategy


def current():
    """The strategy made for this run, else TensorFlow's default (no distribution)."""
    import tensorflow as tf

    return _made[0] if _made else tf.distribute.get_strategy()
