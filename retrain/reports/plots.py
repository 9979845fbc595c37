"""PNG pictures of a run with matplotlib's Agg canvas (no pyplot, no display, no global state)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from retrain.fs import write_atomic

LABEL_CHARS = 22   # longer labels are cut with an ellipsis so the axes keep their room
SIDE_BY_SIDE = 12  # classes up to which the counts and shares panels stand side by side
ANNOTATE_MAX = 25  # write the number in each cell up to this many classes; beyond, colour alone reads better
TRAIN_COLOUR, VAL_COLOUR, KEPT_COLOUR = "#2563eb", "#ea580c", "#16a34a"


def short(label: str, limit: int = LABEL_CHARS) -> str:
    """The label, or its start and end around an ellipsis (labels often share a prefix or a suffix)."""
    if len(label) <= limit:
        return label
    head = (limit - 1) // 2
    return label[:head] + "\u2026" + label[len(label) - (limit - 1 - head):]


def _save(figure: Figure, path: Path, dpi: int = 100) -> None:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a label in a script the font lacks shows as boxes; report.html has it whole
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    write_atomic(path, buffer.getvalue())


def _matrix_panel(ax, values: np.ndarray, labels: list[str], title: str, fmt: str, vmax: float) -> None:
    k = len(labels)
    ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax or 1, interpolation="nearest")
    ax.set_title(title, fontsize=12, pad=10)
    names = [short(label) for label in labels]
    # parse_math=False: a label is plain text ("$x$" or a backslash in a folder name is no math markup).
    ax.set_xticks(range(k), names, rotation=45 if k <= 12 else 90, ha="right" if k <= 12 else "center",
                  rotation_mode="anchor" if k <= 12 else "default", fontsize=9, parse_math=False)
    ax.set_yticks(range(k), names, fontsize=9, parse_math=False)
    ax.set_xlabel("predicted", fontsize=10)
    ax.set_ylabel("true", fontsize=10)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if k <= ANNOTATE_MAX:
        size = 9 if k <= 12 else 7
        for (t, p), value in np.ndenumerate(values):
            if value:
                ax.text(p, t, format(value, fmt), ha="center", va="center", fontsize=size,
                        color="white" if value > 0.55 * (vmax or 1) else "#1f2937")


def confusion_png(path: Path, matrix: np.ndarray, labels: list[str]) -> None:
    """Counts (left) and row-normalised shares (right) side by side; rows true, columns predicted.

    The figure grows with the number of classes (about 0.45 inch per class) so 10+ classes and long
    labels stay readable; past SIDE_BY_SIDE classes the two panels are stacked, so the picture keeps
    a page's width. A row with no images normalises to zeros.
    """
    matrix = np.asarray(matrix)
    side = max(4.0, 0.45 * len(labels) + 1.5)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    stacked = len(labels) > SIDE_BY_SIDE
    figure = Figure(figsize=(side + 1, 2 * side + 1) if stacked else (2 * side + 1.5, side), layout="constrained")
    left, right = figure.subplots(2, 1) if stacked else figure.subplots(1, 2)
    _matrix_panel(left, matrix, labels, f"Counts ({int(matrix.sum())} images)", "d", float(matrix.max()))
    _matrix_panel(right, shares, labels, "Share of each true class", ".2f", 1.0)
    _save(figure, path)


def training_png(path: Path, history: list[dict], kept_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, training and validation, with the kept epoch marked.

    history: dicts with epoch, loss, accuracy, val_loss, val_accuracy (a missing key draws no line).
    """
    epochs = [entry["epoch"] for entry in history]
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    for ax, key, name in zip(figure.subplots(1, 2), ("loss", "accuracy"), ("Loss (cross-entropy)", "Accuracy")):
        for prefix, colour, label in (("", TRAIN_COLOUR, "training"), ("val_", VAL_COLOUR, "validation")):
            points = [(e, entry[prefix + key]) for e, entry in zip(epochs, history)
                      if entry.get(prefix + key) is not None]
            if points:
                ax.plot(*zip(*points), color=colour, label=label, linewidth=1.8,
                        marker="o" if len(points) < 30 else None, markersize=3)
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color=KEPT_COLOUR, linestyle="--", linewidth=1.2,
                       label=f"kept epoch {kept_epoch}")
        ax.set_title(name, fontsize=12)
        ax.set_xlabel("epoch")
        ax.grid(True, color="#e5e7eb", linewidth=0.8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False, fontsize=9)
    _save(figure, path)
