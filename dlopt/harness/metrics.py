"""Task metrics from a model's outputs and the labels, with scikit-learn's implementations.

Classification (integer labels, [N, C] scores with C >= 2, or [N] / [N, 1] scores for a binary
task): accuracy, macro precision / recall / F1 and ROC-AUC (binary, or one-vs-rest on the
softmax). Regression (float labels): MAE and RMSE.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from dlopt.harness.drift import _log_softmax

TASKS = ("auto", "classification", "regression", "none")
HIGHER_IS_BETTER = {
    "accuracy": True,
    "precision_macro": True,
    "recall_macro": True,
    "f1_macro": True,
    "roc_auc": True,
    "mae": False,
    "rmse": False,
}


def is_classifier_output(scores: np.ndarray) -> bool:
    """[N, C] float scores with C >= 2: logits or probabilities of classes."""
    return scores.ndim == 2 and scores.shape[1] >= 2 and scores.dtype.kind == "f"


def task_kind(scores: np.ndarray, labels: np.ndarray) -> str:
    """`classification` or `regression`, from the labels' dtype and the scores' shape."""
    if labels.dtype.kind not in "biu":
        return "regression"
    if is_classifier_output(scores):
        return "classification"
    one_score = scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1)
    binary = bool(np.isin(labels, (0, 1)).all())
    return "classification" if one_score and binary else "regression"


def task_metrics(scores: np.ndarray, labels: np.ndarray, task: str = "auto") -> dict[str, float]:
    """Metrics of one output against the labels (see the module docstring).

    `task` auto infers classification or regression (`task_kind`); classification needs
    labels that are class indices. Raises ValueError when the labels do not fit."""
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"{scores.shape[0]} predictions but {labels.shape[0]} labels")
    kind = task_kind(scores, labels) if task == "auto" else task
    if kind == "classification":
        check_class_indices(labels)
        return _classification(np.asarray(scores, dtype=np.float64), labels.astype(np.int64))
    return _regression(np.asarray(scores, dtype=np.float64), labels.astype(np.float64))


def check_class_indices(labels: np.ndarray) -> None:
    """Raises ValueError unless the labels are class indices (integers, or whole floats)."""
    integral = labels.dtype.kind != "f" or np.array_equal(labels, np.round(labels))
    if not integral:
        raise ValueError("the task is classification but the labels are not class indices")


def class_predictions(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, predicted class) per sample: the softmax and its arg-max of [N, C]
    scores, or, for one score per sample (binary, threshold 0 on logits), the sigmoid."""
    if is_classifier_output(scores):
        probabilities = np.exp(_log_softmax(scores))
        return probabilities, probabilities.argmax(axis=1)
    flat = scores.reshape(-1)
    return 1 / (1 + np.exp(-flat)), (flat > 0).astype(np.int64)


def classification_metrics(
    labels: np.ndarray, predicted: np.ndarray, sample_weight: np.ndarray | None = None
) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 (scikit-learn's). With `sample_weight`, the
    (label, prediction) pairs may be the cells of a confusion matrix weighted by their counts:
    the same figures as from every sample."""
    from sklearn import metrics

    weights = {"sample_weight": sample_weight}
    macro = {"average": "macro", "zero_division": 0, **weights}
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted, **weights)),
        "precision_macro": float(metrics.precision_score(labels, predicted, **macro)),
        "recall_macro": float(metrics.recall_score(labels, predicted, **macro)),
        "f1_macro": float(metrics.f1_score(labels, predicted, **macro)),
    }


def _classification(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    labels = labels.reshape(-1)
    probabilities, predicted = class_predictions(scores)
    result = classification_metrics(labels, predicted)
    result["roc_auc"] = roc_auc(probabilities, labels)
    return result


def roc_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC (binary, or one-vs-rest over the classes present); NaN where undefined."""
    from sklearn import metrics

    present = np.unique(labels)
    if present.size < 2:
        return math.nan  # undefined with one class in the labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if probabilities.ndim == 1:
                return float(metrics.roc_auc_score(labels, probabilities))
            if probabilities.shape[1] == 2:
                return float(metrics.roc_auc_score(labels, probabilities[:, 1]))
            # One-vs-rest over the classes present; renormalised as sklearn requires.
            subset = probabilities[:, present]
            subset = subset / subset.sum(axis=1, keepdims=True)
            if present.size == 2:
                return float(metrics.roc_auc_score(labels == present[1], subset[:, 1]))
            return float(metrics.roc_auc_score(labels, subset, multi_class="ovr", labels=present))
        except ValueError:
            return math.nan


def _regression(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    predicted = scores.reshape(scores.shape[0], -1)
    target = labels.reshape(labels.shape[0], -1)
    if predicted.shape != target.shape:
        raise ValueError(f"predictions {scores.shape} do not match labels {labels.shape}")
    return {
        "mae": float(metrics.mean_absolute_error(target, predicted)),
        "rmse": float(math.sqrt(metrics.mean_squared_error(target, predicted))),
    }


def compare_metrics(
    candidate: dict[str, float], reference: dict[str, float] | None
) -> dict[str, dict[str, Any]]:
    """Each metric with the reference's value and the change (candidate - reference)."""
    compared: dict[str, dict[str, Any]] = {}
    for name, value in candidate.items():
        base = None if reference is None else reference.get(name)
        change = None if base is None or math.isnan(base) or math.isnan(value) else value - base
        compared[name] = {
            "value": _finite_or_none(value),
            "reference": _finite_or_none(base),
            "change": change,
            "higher_is_better": HIGHER_IS_BETTER.get(name, True),
        }
    return compared


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
