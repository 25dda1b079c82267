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
from dlopt.optimize.quantize.budget import DriftBudget, budgets_hold, describe
from dlopt.optimize.quantize.evaluation import EvaluationSet, RunFn, evaluation_set
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.data import DataSource
    from dlopt.optimize.quantize.options import QuantizeOptions

EVALUATION_BATCH = 32
# Op domains ONNX Runtime's CPU provider runs (the ONNX standard ones and its contrib ops).
KNOWN_OP_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft"}
)


@dataclass
class Staged:
    """What a target produced in the staging folder, before it is moved into place."""

    files: list[Path]  # the model file last: readers never see a model without its weights
    recipe: dict[str, Any]
    drift: dict[str, Any]
    format: str = "onnx"


def check_parent_loads(parent: Path) -> None:
    """Refuse, in one line, an FP32 parent that ONNX Runtime (the drift reference of every
    target) cannot load: ops of an unknown domain, external data shorter than the graph says,
    or anything else ORT rejects. Raises QuantizeError naming the file and the fix."""
    from dlopt.errors import BackendError
    from dlopt.optimize.quantize.options import QuantizeError
    from dlopt.optimize.runners import onnx_runner as named_runner

    try:
        named_runner(parent)
    except BackendError as error:
        what, fix = _why_unloadable(parent) or (
            error.message,
            "check the file with onnx.checker and ONNX Runtime, or re-export it",
        )
        raise QuantizeError(f"cannot quantize {parent}: {what}", fix) from error


def _why_unloadable(parent: Path) -> tuple[str, str] | None:
    """(what, fix) for the two usual reasons ORT refuses a model, or None."""
    import onnx

    from dlopt.errors import first_line

    try:
        onnx.load(str(parent))  # reads external data, checking its length
    except ValueError as error:
        return (
            f"its external data is incomplete ({first_line(error, 160)})",
            "copy the model's external data file again in full, or re-export the model",
        )
    model = onnx.load(str(parent), load_external_data=False)
    local = {function.domain for function in model.functions}
    unknown = sorted(
        {
            f"{node.domain}:{node.op_type}"
            for node in model.graph.node
            if node.domain not in KNOWN_OP_DOMAINS and node.domain not in local
        }
    )
    if unknown:
        return (
            f"it uses ops of a domain ONNX Runtime does not know ({', '.join(unknown[:3])})",
            "quantize a model of standard ONNX ops: re-export it without custom ops, or "
            "quantize the model before adding them",
        )
    return None


def open_evaluation(specs: Sequence[TensorSpec], options: QuantizeOptions) -> DataSource:
    """The evaluation data: `--eval`, else the calibration data, else random inputs."""
    from dlopt.data import open_data

    source = options.evaluation or options.calibration
    return open_data(source, specs, EVALUATION_BATCH, options.evaluation_size, options.seed)


def reference_set(
    parent: Path, specs: Sequence[TensorSpec], options: QuantizeOptions
) -> EvaluationSet:
    """The evaluation feeds with the FP32 parent's outputs on them (one pass over the data)."""
    from dlopt.optimize.runners import onnx_runner as named_runner

    run = named_runner(parent)

    def reference(feed: Mapping[str, Any]) -> list[Any]:
        return list(run(feed).values())

    evaluation = evaluation_set(open_evaluation(specs, options), reference, _output_names(parent))
    return evaluation


def _output_names(path: Path) -> list[str]:
    import onnx

    return [output.name for output in onnx.load(str(path), load_external_data=False).graph.output]


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
    budget_source: str = "given",
    **extra: Any,
) -> dict[str, Any]:
    """The manifest's `checks.drift`: data, measured values, budgets (and whether they are the
    default ones) and whether they hold; `random_inputs` when no data was given."""
    return {
        "data": evaluation.description,
        "data_sha256": evaluation.sha256,
        "samples": evaluation.samples,
        "random_inputs": evaluation.random_inputs,
        "reference": "FP32 parent on ONNX Runtime (CPU)",
        **{key: json_number(value, 6) for key, value in measured.items()},
        "budgets": [str(budget) for budget in budgets],
        "budget_source": budget_source,
        "within_budget": budgets_hold(budgets, measured) if budgets else None,
        **extra,
    }


def require_budgets(
    budgets: Sequence[DriftBudget],
    measured: Mapping[str, float],
    what: str,
    hint: str,
    budget_source: str = "given",
    evaluation: EvaluationSet | None = None,
) -> None:
    """Raise BudgetNotMetError (exit 1, nothing kept) when a budget does not hold.

    The message says whether the budget was the default one (and how to change it) and when
    drift was measured on random inputs.
    """
    failed = [budget for budget in budgets if not budget.holds(measured)]
    if not failed:
        return
    which = "the default budget" if budget_source == "default" else "--max-drift"
    where = (
        " on random inputs (no --eval or --calibration data)"
        if evaluation is not None and evaluation.random_inputs
        else ""
    )
    if budget_source == "default":
        hint += (
            "; or set your own with --max-drift METRIC=VALUE, or write it anyway with "
            "--max-drift none"
        )
    raise BudgetNotMetError(
        f"{what} misses {which} {', '.join(str(b) for b in failed)} "
        f"(measured {describe(measured)}{where}); nothing was written",
        hint,
    )
