"""A bench row's outputs against the reference's: drift per output and task metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dlopt.harness.drift import drift, softmax_kl_divergence, top1_agreement
from dlopt.harness.metrics import compare_metrics, is_classifier_output, task_metrics

if TYPE_CHECKING:
    from dlopt.harness.results import BenchRow

OUTPUT_PREFIX = "output:"
LABELS = "labels"
PREFERRED_PREDICTION = ("logits", "output", "output_0")


def compare_row(
    row: BenchRow,
    outputs: dict[str, np.ndarray],
    reference: dict[str, np.ndarray] | None,
    reference_label: str | None,
    task: str = "auto",
) -> None:
    """Fill `row.drift` and `row.metrics` (both against the reference where there is one).

    `task` (see `dlopt.harness.metrics.TASKS`) chooses the task metrics; none: no metrics."""
    candidate = _outputs(outputs)
    labels = outputs.get(LABELS)
    if reference is not None:
        reference_outputs = _outputs(reference)
        row.drift = {}
        for name, values in candidate.items():
            base = reference_outputs.get(name)
            if base is None or base.shape != values.shape:
                row.warnings.append(
                    f"output {name!r}: no reference output of shape {values.shape} "
                    f"in {reference_label}; no drift"
                )
                continue
            entry: dict[str, Any] = {**drift(values, base).to_dict(), "against": reference_label}
            if is_classifier_output(values):
                entry["top1_agreement"] = top1_agreement(values, base)
                entry["softmax_kl_divergence"] = softmax_kl_divergence(values, base)
            row.drift[name] = entry
    if labels is None or not candidate or task == "none":
        return
    prediction = _prediction_output(candidate)
    try:
        own = task_metrics(candidate[prediction], labels, task)
        base_metrics = (
            task_metrics(_outputs(reference)[prediction], labels, task)
            if reference is not None and prediction in _outputs(reference)
            else None
        )
    except ValueError as error:
        row.warnings.append(f"no task metrics: {error}")
        return
    row.metrics_output = prediction
    row.metrics = compare_metrics(own, base_metrics)


def _outputs(archive: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        key[len(OUTPUT_PREFIX) :]: value
        for key, value in archive.items()
        if key.startswith(OUTPUT_PREFIX)
    }


def _prediction_output(outputs: dict[str, np.ndarray]) -> str:
    for name in PREFERRED_PREDICTION:
        if name in outputs:
            return name
    return next(iter(outputs))
