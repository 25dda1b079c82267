"""A bench row's outputs against the reference's: drift per output and task metrics.

Both are read from disk block by block and computed per shard of the evaluation set, then
merged (`dlopt.harness.evaluation_stats`): memory stays flat however large the set is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlopt.harness.evaluation_stats import (
    ROC_AUC_MAX_SCORES,
    Plan,
    evaluate,
    is_classifier,
    scores_count,
    task_kind_of,
)
from dlopt.harness.metrics import compare_metrics
from dlopt.harness.output_store import StoredOutputs

if TYPE_CHECKING:
    from dlopt.harness.results import BenchRow

PREFERRED_PREDICTION = ("logits", "output", "output_0")


def compare_row(
    row: BenchRow,
    outputs: StoredOutputs,
    reference: StoredOutputs | None,
    reference_label: str | None,
    task: str = "auto",
) -> None:
    """Fill `row.drift` and `row.metrics` (both against the reference where there is one).

    `task` (see `dlopt.harness.metrics.TASKS`) chooses the task metrics; none: no metrics."""
    plan = Plan(drift_outputs=[], classifier={})
    if reference is not None:
        for name in outputs.names:
            same = name in reference.names and (
                reference.sample_shape(name) == outputs.sample_shape(name)
                and reference.count == outputs.count
            )
            if not same:
                shape = (outputs.count, *outputs.sample_shape(name))
                row.warnings.append(
                    f"output {name!r}: no reference output of shape {shape} "
                    f"in {reference_label}; no drift"
                )
                continue
            plan.drift_outputs.append(name)
            plan.classifier[name] = is_classifier(outputs, name)
    if outputs.has_labels and outputs.names and task != "none":
        plan.prediction = _prediction_output(outputs.names)
        try:
            plan.kind = task_kind_of(outputs, plan.prediction, task)
        except ValueError as error:
            row.warnings.append(f"no task metrics: {error}")
            plan.prediction = None
        else:
            plan.reference_has_prediction = reference is not None and (
                plan.prediction in reference.names and reference.count == outputs.count
            )
            plan.keep_probabilities = scores_count(outputs, plan.prediction) <= ROC_AUC_MAX_SCORES
            if plan.kind == "classification" and not plan.keep_probabilities:
                row.warnings.append(
                    f"roc_auc left out: it needs every score at once, and "
                    f"{plan.prediction!r} has more than {ROC_AUC_MAX_SCORES}"
                )
    try:
        stats = evaluate(outputs, reference, plan)
    except ValueError as error:  # labels that do not fit the task
        row.warnings.append(f"no task metrics: {error}")
        plan.prediction = None
        stats = evaluate(outputs, reference, plan)
    if reference is not None:
        row.drift = {
            name: {**sums.result(), "against": reference_label}
            for name, sums in stats.drift.items()
        }
    if plan.prediction is None or stats.task is None:
        return
    own = stats.task.result()
    base = stats.reference_task.result() if stats.reference_task is not None else None
    row.metrics_output = plan.prediction
    row.metrics = compare_metrics(own, base)


def _prediction_output(names: list[str]) -> str:
    for name in PREFERRED_PREDICTION:
        if name in names:
            return name
    return names[0]
