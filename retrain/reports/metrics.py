"""Classification metrics from true labels and softmax scores; pure numpy (no TensorFlow import).

Conventions (as scikit-learn's with zero_division=0):
- precision of a class that is never predicted is 0 (it is undefined: 0 / 0); recall of a class with
  no true images is 0; F1 is 0 when precision + recall is 0.
- macro averages are unweighted means over the classes that occur in the true or the predicted labels;
  weighted averages weight each class by its support (number of true images).
- loss is the mean cross-entropy -log(score of the true class), with scores clipped to [1e-7, 1] as
  Keras does, so one confident mistake costs at most 16.1.
- expected calibration error (ECE): confidences (the top score) go into 15 equal-width bins
  [0, 1/15), [1/15, 2/15), ..., [14/15, 1] (1.0 falls in the last); ECE is the sum over bins of
  (images in bin / N) * |accuracy in bin - mean confidence in bin|, in [0, 1].
"""
from __future__ import annotations

import dataclasses

import numpy as np

from retrain.errors import RetrainError

ECE_BINS = 15
EPSILON = 1e-7  # Keras' clip for log(0)
CLASS_WEIGHT_MODES = ("auto", "balanced", "none")
AUTO_IMBALANCE = 1.5  # auto turns balancing on when the largest class is over 1.5x the smallest


@dataclasses.dataclass(frozen=True)
class Metrics:
    summary: dict                              # JSON-ready: accuracy, loss, ece, per_class, macro, ...
    confusion: np.ndarray                      # int64 [K, K]: rows true, columns predicted
    misclassified: list[tuple[int, int, int, float]]  # (row, true, predicted, score), score desc


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """int64 [k, k] counts: rows are true labels, columns predicted labels."""
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, f1, support), each [K], from a confusion matrix; 0 where undefined."""
    tp = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return precision, recall, f1, support


def expected_calibration_error(correct: np.ndarray, confidence: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over `bins` equal-width confidence bins (see the module docstring); correct: bool [N]."""
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(index):
        inside = index == b
        total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def most_confused(matrix: np.ndarray, labels: list[str], n: int = 3) -> list[dict]:
    """The n largest off-diagonal counts as {true, predicted, count}, ties in label order; zeros left out."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    pairs = sorted(((-int(off[t, p]), t, p) for t, p in zip(*np.nonzero(off))))[:n]
    return [{"true": labels[t], "predicted": labels[p], "count": -c} for c, t, p in pairs]


def compute(y_true, scores, labels: list[str]) -> Metrics:
    """Metrics of one split. y_true: int [N] in [0, K); scores: float [N, K] softmax rows; labels: K names.

    N may be 0 only if the caller never needs numbers: with no rows, every figure is None.
    """
    y_true = np.asarray(y_true, np.int64)
    scores = np.asarray(scores, np.float64).reshape(len(y_true), len(labels))
    k, n = len(labels), len(y_true)
    y_pred = scores.argmax(axis=1) if n else np.zeros(0, np.int64)
    matrix = confusion_matrix(y_true, y_pred, k)
    precision, recall, f1, support = per_class(matrix)
    summary: dict = {"count": n, "accuracy": None, "loss": None, "ece": None}
    if n:
        confidence = scores[np.arange(n), y_pred]
        correct = y_pred == y_true
        summary["accuracy"] = float(correct.mean())
        if k > 5:
            top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
            summary["top5_accuracy"] = float((top5 == y_true[:, None]).any(axis=1).mean())
        true_scores = np.clip(scores[np.arange(n), y_true], EPSILON, 1.0)
        summary["loss"] = float(-np.log(true_scores).mean())
        summary["ece"] = expected_calibration_error(correct, confidence)
    present = (support > 0) | (matrix.sum(axis=0) > 0)
    weights = support / n if n else np.zeros(k)
    for name, how in (("macro", lambda v: float(v[present].mean()) if present.any() else 0.0),
                      ("weighted", lambda v: float((v * weights).sum()))):
        summary[name] = {"precision": how(precision), "recall": how(recall), "f1": how(f1)}
    summary["per_class"] = {labels[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                        "f1": float(f1[i]), "support": int(support[i])} for i in range(k)}
    summary["most_confused"] = most_confused(matrix, labels)
    summary["confusion"] = matrix.tolist()
    wrong = np.flatnonzero(y_pred != y_true)
    rows = sorted(((int(r), int(y_true[r]), int(y_pred[r]), float(scores[r, y_pred[r]])) for r in wrong),
                  key=lambda row: (-row[3], row[0]))
    return Metrics(summary=summary, confusion=matrix, misclassified=rows)


def class_weights(counts: dict[str, int], mode: str) -> tuple[list[float] | None, str]:
    """Loss weight per class index (counts' order) and the mode actually used ("balanced" or "none").

    balanced: n_total / (K * n_class), so every class carries the same total weight (a class with no
    images gets 0). auto: balanced when the largest class is over 1.5x the smallest, else none.
    """
    if mode not in CLASS_WEIGHT_MODES:
        raise RetrainError(f"--class-weight: found {mode!r}, expected one of {', '.join(CLASS_WEIGHT_MODES)}")
    sizes = np.array(list(counts.values()), np.float64)
    if mode == "auto":
        mode = "balanced" if sizes.max() > AUTO_IMBALANCE * sizes.min() else "none"
    if mode == "none":
        return None, "none"
    weights = np.divide(sizes.sum(), len(sizes) * sizes, out=np.zeros_like(sizes), where=sizes > 0)
    return [float(w) for w in weights], "balanced"
