"""Metrics against answers computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrain.errors import RetrainError
from retrain.reports.metrics import class_weights, compute, expected_calibration_error

LABELS = ["a", "b", "c"]
Y = [0, 0, 0, 1, 1, 2]
SCORES = [[0.7, 0.2, 0.1],   # a, right
          [0.6, 0.3, 0.1],   # a, right
          [0.2, 0.5, 0.3],   # a taken for b (0.5)
          [0.1, 0.8, 0.1],   # b, right
          [0.3, 0.3, 0.4],   # b taken for c (0.4)
          [0.1, 0.1, 0.8]]   # c, right


def test_three_classes_by_hand():
    result = compute(Y, SCORES, LABELS)
    s = result.summary
    assert result.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert s["accuracy"] == pytest.approx(4 / 6) and "top5_accuracy" not in s
    assert s["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.2, 0.8, 0.3, 0.8])))
    # precision = right / predicted, recall = right / true: a 2/2, 2/3; b 1/2, 1/2; c 1/2, 1/1
    expected = {"a": (1.0, 2 / 3, 0.8, 3), "b": (0.5, 0.5, 0.5, 2), "c": (0.5, 1.0, 2 / 3, 1)}
    for label, (p, r, f1, n) in expected.items():
        row = s["per_class"][label]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p, r, f1, n))
    assert s["macro"]["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s["weighted"]["f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert s["weighted"]["recall"] == pytest.approx(s["accuracy"])  # always true of support weighting
    assert s["most_confused"] == [{"true": "a", "predicted": "b", "count": 1},
                                  {"true": "b", "predicted": "c", "count": 1}]
    assert result.misclassified == [(2, 0, 1, 0.5), (4, 1, 2, 0.4)]


def test_ece_on_a_known_case():
    # Bins of width 1/15: 0.95 -> bin 14 (one of two right), 0.55 -> bin 8 (both right).
    # ECE = 2/4 * |0.5 - 0.95| + 2/4 * |1.0 - 0.55| = 0.45
    result = compute([0, 1, 0, 1], [[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]], ["x", "y"])
    assert result.summary["ece"] == pytest.approx(0.45)
    assert expected_calibration_error(np.array([True] * 3), np.array([1.0, 1.0, 1.0])) == 0.0


def test_a_class_never_predicted_has_precision_zero():
    s = compute([0, 1, 2], [[0.9, 0.05, 0.05]] * 3, LABELS).summary
    assert s["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_class"]["a"]["precision"] == pytest.approx(1 / 3)


def test_top5_only_above_five_classes():
    labels = list("abcdefg")
    scores = np.eye(7)[[6, 0]] * 0.4 + np.linspace(0.1, 0.0, 7) / 2
    s = compute([1, 0], scores, labels).summary   # row 0: class 1 ranks third, row 1: right
    assert s["accuracy"] == 0.5 and s["top5_accuracy"] == 1.0


def test_loss_of_a_confident_mistake_is_bounded():
    s = compute([1], [[1.0, 0.0]], ["x", "y"]).summary
    assert s["loss"] == pytest.approx(-math.log(1e-7)) and s["accuracy"] == 0.0


def test_class_weights():
    assert class_weights({"a": 10, "b": 20}, "auto") == ([1.5, 0.75], "balanced")
    assert class_weights({"a": 10, "b": 15}, "auto") == (None, "none")  # 1.5x is not over 1.5x
    assert class_weights({"a": 10, "b": 10}, "balanced") == ([1.0, 1.0], "balanced")
    assert class_weights({"a": 10, "b": 90}, "none") == (None, "none")
    with pytest.raises(RetrainError, match="--class-weight"):
        class_weights({"a": 1}, "inverse")


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 7).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.integers(0, k - 1), min_size=1, max_size=40),
    st.integers(0, 2**32 - 1))))
def test_invariants_on_random_scores(case):
    k, y, seed = case
    logits = np.random.default_rng(seed).normal(size=(len(y), k)) * 3
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = compute(y, scores, [f"c{i}" for i in range(k)])
    s = result.summary
    assert result.confusion.sum() == len(y) and s["accuracy"] == pytest.approx(np.trace(result.confusion) / len(y))
    assert s["weighted"]["recall"] == pytest.approx(s["accuracy"])
    assert len(result.misclassified) == len(y) - np.trace(result.confusion)
    assert [r[3] for r in result.misclassified] == sorted((r[3] for r in result.misclassified), reverse=True)
    assert 0.0 <= s["ece"] <= 1.0 and s["loss"] >= 0.0
    assert ("top5_accuracy" in s) == (k > 5)
