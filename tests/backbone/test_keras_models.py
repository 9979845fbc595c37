"""The one Keras module: the averaged head is the ensemble of two heads' logits in one layer."""
from __future__ import annotations

import numpy as np

from retrain.backbone import keras_models


def test_the_average_of_two_heads_averages_their_logits():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 5)).astype(np.float32)
    heads = [keras_models.build_head(5, 3, dropout=0.2) for _ in range(2)]
    for head in heads:
        head.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in head.get_weights()])
    mean = keras_models.average(*heads)

    def logits(head):
        weights, bias = head.get_weights()
        return features @ weights + bias

    expected = np.exp(logits(heads[0]) / 2 + logits(heads[1]) / 2)
    np.testing.assert_allclose(mean(features, training=False), expected / expected.sum(1, keepdims=True), rtol=1e-5)
    assert mean is not heads[0] and keras_models.average(heads[0], heads[0]).get_weights()[1].tolist() == \
        heads[0].get_weights()[1].tolist()
