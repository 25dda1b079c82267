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

The evaluation data and the drift measured on it: `evaluation.py`. When a quantized model is
over budget the ONNX Runtime path ranks its quantized nodes by their
effect on the output (`quantize_sensitivity`) and returns them to float a group at a time
(`float_groups`) until the budget holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dlopt.errors import ConfigError

# metric -> True when the value is a floor (higher is better), False when it is a ceiling.
BUDGET_METRICS: dict[str, bool] = {
    "accuracy_drop": False,
    "cosine": True,
    "top1_agreement": True,
    "sqnr_db": True,
    "relative_l2_error": False,
    "max_abs_error": False,
}


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


def describe(measured: Mapping[str, Any]) -> str:
    """`cosine 0.9991, top1_agreement 1, accuracy_drop 0.002` for messages (values that are
    None or missing are left out)."""
    keys = ("accuracy_drop", "cosine", "top1_agreement", "sqnr_db", "relative_l2_error")
    return ", ".join(
        f"{key} {measured[key]:.4g}"
        for key in keys
        if isinstance(measured.get(key), (int, float)) and not isinstance(measured[key], bool)
    )
