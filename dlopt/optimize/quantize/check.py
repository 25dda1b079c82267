"""What every quantize target shares: the evaluation set with the FP32 parent's outputs, runners
for the artifacts, the drift record for the manifest, and the budget verdict.

The reference is always the FP32 ONNX parent on ONNX Runtime's CPU provider, so drift means
the same thing for every target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import BudgetNotMetError
from dlopt.jsonio import json_number
from dlopt.optimize.quantize.budget import (
    DriftBudget,
    EvaluationSet,
    RunFn,
    budgets_hold,
    describe,
    evaluation_set,
)
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.data import DataSource
    from dlopt.optimize.quantize.options import QuantizeOptions

EVALUATION_BATCH = 32


@dataclass
class Staged:
    """What a target produced in the staging folder, before it is moved into place."""

    files: list[Path]  # the model file last: readers never see a model without its weights
    recipe: dict[str, Any]
    drift: dict[str, Any]
    format: str = "onnx"


def open_evaluation(specs: Sequence[TensorSpec], options: QuantizeOptions) -> DataSource:
    """The evaluation data: `--eval`, else the calibration data, else random inputs."""
    from dlopt.data import open_data

    source = options.evaluation or options.calibration
    return open_data(source, specs, EVALUATION_BATCH, options.evaluation_size, options.seed)


def reference_set(
    parent: Path, specs: Sequence[TensorSpec], options: QuantizeOptions
) -> EvaluationSet:
    """The evaluation feeds with the FP32 parent's outputs on them (one pass over the data)."""
    return evaluation_set(open_evaluation(specs, options), onnx_runner(parent))


def onnx_runner(path: Path) -> RunFn:
    """All outputs of an ONNX file, in graph order, on ONNX Runtime's CPU provider."""
    from dlopt.optimize.runners import onnx_runner as named_runner

    run = named_runner(path)
    return lambda feed: list(run(feed).values())


def ir_runner(path: Path, precision_hint: str) -> RunFn:
    """All outputs of an OpenVINO IR, in graph order, compiled with `precision_hint`."""
    from dlopt.optimize.runners import ir_runner as named_runner

    run = named_runner(path, precision_hint)
    return lambda feed: list(run(feed).values())


def drift_record(
    evaluation: EvaluationSet,
    measured: Mapping[str, float],
    budgets: Sequence[DriftBudget],
    **extra: Any,
) -> dict[str, Any]:
    """The manifest's `checks.drift`: data, measured values, budgets and whether they hold."""
    return {
        "data": evaluation.description,
        "data_sha256": evaluation.sha256,
        "samples": evaluation.samples,
        "reference": "FP32 parent on ONNX Runtime (CPU)",
        **{key: json_number(value, 6) for key, value in measured.items()},
        "budgets": [str(budget) for budget in budgets],
        "within_budget": budgets_hold(budgets, measured) if budgets else None,
        **extra,
    }


def require_budgets(
    budgets: Sequence[DriftBudget], measured: Mapping[str, float], what: str, hint: str
) -> None:
    """Raise BudgetNotMetError (exit 1, nothing kept) when a budget does not hold."""
    failed = [budget for budget in budgets if not budget.holds(measured)]
    if failed:
        raise BudgetNotMetError(
            f"{what} misses --max-drift {', '.join(str(b) for b in failed)} "
            f"(measured {describe(measured)}); nothing was written",
            hint,
        )
