"""Accuracy-aware quantization: drift budgets, measuring them, choosing layers to keep float.

A budget is `METRIC=VALUE` (`--max-drift accuracy_drop=0.01`, `--max-drift cosine=0.995`).
Metrics with a floor (cosine, top1_agreement, sqnr_db) must stay at or above the value; metrics
with a ceiling (accuracy_drop, relative_l2_error, max_abs_error) at or below it. Drift is
measured on the evaluation data against the FP32 parent's outputs on the same inputs, output by
output; the worst output counts.

Without `--max-drift`, DEFAULT_BUDGETS apply (`--max-drift none` opts out): cosine >= 0.99 on
every output, and top-1 agreement >= 0.99 on classifier outputs. Chosen from measurements
(README, "Accuracy budgets"): every INT8 variant that kept its accuracy here had cosine >=
0.9928 and agreement >= 0.99; the broken ones had 0.968 (text transformer, ORT static: 4.3%
accuracy lost) and 0.36 (MiniLM, ORT static).
An output counts as a classifier's when it is [N, C] scores and either the evaluation labels are
class ids below C or its name says so (logits, probabilities, scores): an embedding is also
[N, C] floats, and the arg-max of an embedding means nothing.

When a quantized model is over budget the ONNX Runtime path ranks its quantized nodes by their
effect on the output (`quantize_sensitivity`) and returns them to float a group at a time
(`float_groups`) until the budget holds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dlopt.errors import ConfigError

if TYPE_CHECKING:
    from dlopt.data import DataSource

# metric -> True when the value is a floor (higher is better), False when it is a ceiling.
BUDGET_METRICS: dict[str, bool] = {
    "accuracy_drop": False,
    "cosine": True,
    "top1_agreement": True,
    "sqnr_db": True,
    "relative_l2_error": False,
    "max_abs_error": False,
}
RunFn = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class DriftBudget:
    """One `METRIC=VALUE` bound on drift from the FP32 parent.

    `classifiers_only`: the bound applies where the metric was measured (top-1 agreement exists
    for classifier outputs only); a budget the user asked for always applies.
    """

    metric: str
    value: float
    classifiers_only: bool = False

    @property
    def is_floor(self) -> bool:
        return BUDGET_METRICS[self.metric]

    def holds(self, measured: Mapping[str, float]) -> bool:
        """Whether `measured[metric]` is within the bound; a missing or NaN value fails, except
        a missing one for a `classifiers_only` bound."""
        value = measured.get(self.metric)
        if value is None:
            return self.classifiers_only
        if math.isnan(value):
            return False
        return value >= self.value if self.is_floor else value <= self.value

    def __str__(self) -> str:
        text = f"{self.metric} {'>=' if self.is_floor else '<='} {self.value:g}"
        return f"{text} (classifier outputs)" if self.classifiers_only else text


# The budget every quantization keeps unless the user gives one or says `--max-drift none`.
DEFAULT_BUDGETS = (
    DriftBudget("cosine", 0.99),
    DriftBudget("top1_agreement", 0.99, classifiers_only=True),
)
NO_BUDGET = "none"
# Output names that mark class scores (compared lower-case, as substrings).
CLASSIFIER_OUTPUT_WORDS = ("logit", "prob", "class", "score")


def parse_budget(text: str) -> DriftBudget:
    """`"cosine=0.995"` -> DriftBudget; raises ConfigError naming the text and the choices."""
    metric, sep, raw = text.partition("=")
    metric = metric.strip()
    allowed = ", ".join(BUDGET_METRICS)
    if not sep or metric not in BUDGET_METRICS:
        raise ConfigError(
            f"--max-drift {text!r} is not METRIC=VALUE with a known metric",
            f"use one of {allowed}, e.g. --max-drift accuracy_drop=0.01",
        )
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"--max-drift {text!r} has a value that is not a number", "e.g. cosine=0.995"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"--max-drift {text!r} is not finite", "give a finite number")
    bounded = {"cosine": (-1.0, 1.0), "top1_agreement": (0.0, 1.0), "accuracy_drop": (0.0, 1.0)}
    low, high = bounded.get(metric, (0.0, math.inf) if metric != "sqnr_db" else (-math.inf, 1e9))
    if not low <= value <= high:
        raise ConfigError(
            f"--max-drift {text!r} is out of range", f"{metric} takes values in [{low:g}, {high:g}]"
        )
    return DriftBudget(metric, value)


def budgets_hold(budgets: Sequence[DriftBudget], measured: Mapping[str, float]) -> bool:
    return all(budget.holds(measured) for budget in budgets)


def float_groups(ranking: Sequence[str], group_size: int, max_float: int) -> list[list[str]]:
    """The cumulative sets of nodes to keep float, most sensitive first, one group at a time.

    `ranking` is most sensitive first; each returned set adds the next `group_size` nodes and
    no set holds more than `max_float` nodes. Empty when nothing may stay float.
    """
    if group_size < 1:
        raise ValueError(f"group_size {group_size} must be at least 1")
    groups: list[list[str]] = []
    for end in range(group_size, len(ranking) + group_size, group_size):
        chosen = list(ranking[: min(end, len(ranking), max_float)])
        if not chosen or (groups and len(chosen) == len(groups[-1])):
            break
        groups.append(chosen)
    return groups


def default_group_size(quantized_nodes: int) -> int:
    """About a tenth of the quantized nodes per step (at least one)."""
    return max(1, math.ceil(quantized_nodes / 10))


@dataclass
class EvaluationSet:
    """Evaluation feeds with the FP32 parent's outputs on them (and labels when given)."""

    feeds: list[dict[str, np.ndarray]]
    reference: list[np.ndarray]  # one concatenated array per output, in output order
    labels: np.ndarray | None
    description: str
    sha256: str
    output_names: list[str] = field(default_factory=list)
    random_inputs: bool = False  # no data was given: drift on random inputs says little

    @property
    def samples(self) -> int:
        return int(self.reference[0].shape[0]) if self.reference else 0


def evaluation_set(
    data: DataSource, reference: RunFn, output_names: Sequence[str] = ()
) -> EvaluationSet:
    """Run the reference on every batch of `data` and keep what later measurements need; the
    data's sha256 is taken in the same pass. `output_names`: the reference's, in order (they
    tell class scores from embeddings)."""
    from dlopt.data import SYNTHETIC, hash_batch

    digest = hashlib.sha256()
    kept: list[dict[str, np.ndarray]] = []
    outputs: list[list[np.ndarray]] = []
    labels: list[np.ndarray] = []
    for batch in data:
        hash_batch(digest, batch)
        kept.append(dict(batch.inputs))
        outputs.append(reference(kept[-1]))
        if batch.labels is not None:
            labels.append(batch.labels)
    columns = [np.concatenate(parts) for parts in zip(*outputs, strict=True)]
    joined = np.concatenate(labels) if labels and len(labels) == len(kept) else None
    return EvaluationSet(
        kept,
        columns,
        joined,
        data.description,
        digest.hexdigest(),
        list(output_names),
        random_inputs=data.description.startswith(SYNTHETIC),
    )


def is_classifier(reference: np.ndarray, name: str | None, labels: np.ndarray | None) -> bool:
    """Whether an output holds class scores (see the module docstring): [N, C] floats, and
    labels that are class ids below C or a name that says so."""
    from dlopt.harness.metrics import is_classifier_output

    if not is_classifier_output(reference):
        return False
    if labels is not None and _are_class_ids(labels, int(reference.shape[1])):
        return True
    return bool(name) and any(word in str(name).lower() for word in CLASSIFIER_OUTPUT_WORDS)


def _are_class_ids(labels: np.ndarray, classes: int) -> bool:
    if labels.dtype.kind not in "biu" or labels.size == 0:
        return False
    return int(labels.min()) >= 0 and int(labels.max()) < classes


def measure_drift(
    run: RunFn, evaluation: EvaluationSet, budgets: Sequence[DriftBudget] = ()
) -> dict[str, float]:
    """Drift of `run` from the reference on the evaluation set: the worst over outputs, with
    top-1 agreement on classifier outputs (`is_classifier`, or any [N, C] output when a budget
    asks for it), plus accuracy and accuracy_drop when the data has labels and the first
    output is a classifier's.

    Raises ConfigError when a budget asks for accuracy_drop and that cannot be measured.
    """
    from dlopt.harness.drift import drift, top1_agreement
    from dlopt.harness.metrics import is_classifier_output, task_metrics

    produced = [run(feed) for feed in evaluation.feeds]
    columns = [np.concatenate(parts) for parts in zip(*produced, strict=True)]
    result: dict[str, float] = {}
    asked_top1 = any(b.metric == "top1_agreement" and not b.classifiers_only for b in budgets)
    names = evaluation.output_names
    for index, (candidate, reference) in enumerate(zip(columns, evaluation.reference, strict=True)):
        measured = drift(candidate.astype(np.float64), reference.astype(np.float64))
        worst = {
            "cosine": min,
            "sqnr_db": min,
            "relative_l2_error": max,
            "max_abs_error": max,
        }
        for name, pick in worst.items():
            value = float(getattr(measured, name))
            result[name] = pick(result[name], value) if name in result else value
        output_name = names[index] if index < len(names) else None
        labels = evaluation.labels if index == 0 else None
        if is_classifier(reference, output_name, labels) or (
            asked_top1 and is_classifier_output(reference)
        ):
            agreement = top1_agreement(candidate, reference)
            result["top1_agreement"] = min(result.get("top1_agreement", 1.0), agreement)
    primary, reference = columns[0], evaluation.reference[0]
    if evaluation.labels is not None and is_classifier_output(reference):
        before = task_metrics(reference, evaluation.labels)["accuracy"]
        after = task_metrics(primary, evaluation.labels)["accuracy"]
        result.update(accuracy_fp32=before, accuracy=after, accuracy_drop=before - after)
    if any(b.metric == "accuracy_drop" for b in budgets) and "accuracy_drop" not in result:
        raise ConfigError(
            f"--max-drift accuracy_drop needs labels and class scores; {evaluation.description} "
            "gives none",
            "give --eval data with labels, or a drift budget such as cosine=0.995",
        )
    return result


def describe(measured: Mapping[str, Any]) -> str:
    """`cosine 0.9991, top1_agreement 1, accuracy_drop 0.002` for messages (values that are
    None or missing are left out)."""
    keys = ("accuracy_drop", "cosine", "top1_agreement", "sqnr_db", "relative_l2_error")
    return ", ".join(
        f"{key} {measured[key]:.4g}"
        for key in keys
        if isinstance(measured.get(key), (int, float)) and not isinstance(measured[key], bool)
    )
