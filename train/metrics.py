"""Metrics of the 4Q task and the figures of a run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")


def quadrant_metrics(labels: NDArray[np.integer], probabilities: NDArray[np.floating]
                     ) -> dict[str, Any]:
    """Macro-F1, accuracy, valence and arousal accuracy, confusion matrix.

    Parameters
    ----------
    labels : ndarray, shape (n,)
        True quadrant indices (0..3 for Q1..Q4).
    probabilities : ndarray, shape (n, 4)
        Predicted probabilities.

    Returns
    -------
    dict
        ``macro_f1``, ``accuracy``, ``valence_accuracy`` (Q1+Q4 vs Q2+Q3),
        ``arousal_accuracy`` (Q1+Q2 vs Q3+Q4), ``confusion`` (rows: truth).
    """
    labels = np.asarray(labels)
    p = np.asarray(probabilities)
    predicted = p.argmax(axis=1)
    positive_valence = np.isin(labels, (0, 3))
    high_arousal = np.isin(labels, (0, 1))
    return {
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=[0, 1, 2, 3])),
        "accuracy": float(accuracy_score(labels, predicted)),
        "valence_accuracy": float(np.mean((p[:, 0] + p[:, 3] > 0.5) == positive_valence)),
        "arousal_accuracy": float(np.mean((p[:, 0] + p[:, 1] > 0.5) == high_arousal)),
        "confusion": confusion_matrix(labels, predicted, labels=[0, 1, 2, 3]).tolist(),
    }


def per_fold(labels: NDArray[np.integer], probabilities: NDArray[np.floating],
             folds: NDArray[np.integer]) -> dict[str, Any]:
    """:func:`quadrant_metrics` pooled over all clips, per fold, and the folds' mean and std."""
    folds = np.asarray(folds)
    by_fold = {int(k): quadrant_metrics(labels[folds == k], probabilities[folds == k])
               for k in np.unique(folds)}
    summary: dict[str, Any] = {"pooled": quadrant_metrics(labels, probabilities),
                               "folds": by_fold}
    for key in ("macro_f1", "accuracy", "valence_accuracy", "arousal_accuracy"):
        values = [m[key] for m in by_fold.values()]
        summary[f"{key}_mean"] = float(np.mean(values))
        summary[f"{key}_std"] = float(np.std(values))
    return summary


def save_confusion_png(confusion: list[list[int]], path: Path, title: str) -> None:
    """A confusion matrix as a PNG (rows: truth, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(4), QUADRANTS)
    ax.set_yticks(range(4), QUADRANTS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_curves_png(histories: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Training loss and validation score per epoch, one line per fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        left.plot(epochs, [h["train_loss"] for h in history], label=name)
        if all("valid_score" in h for h in history):
            right.plot(epochs, [h["valid_score"] for h in history], label=name)
    left.set_title("training loss")
    right.set_title("validation macro-F1 (windows)")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(data: Any, path: Path) -> None:
    """Indented JSON with a trailing newline."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
