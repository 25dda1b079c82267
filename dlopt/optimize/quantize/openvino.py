"""The openvino target: INT8 IR with NNCF, FP16-weight and bf16-hinted IRs (glue only).

- static: `nncf.quantize` on the calibration data, `model_type=TRANSFORMER` when the graph has
  attention (or the user says so). With a `--max-drift` budget,
  `nncf.quantize_with_accuracy_control` instead: NNCF ranks the quantized operations and
  returns them to float until its validation metric is within `max_drop` of the FP32 model's.
  It controls one metric, so one budget, and it is checked again afterwards with dlopt's own
  drift measurement (NNCF compiles with OpenVINO's default hints, dlopt with the recorded ones).
- fp16: weights stored FP16 (`compress_to_fp16=True`), compiled with f32 inference precision.
- bf16: FP32 weights, compiled with `INFERENCE_PRECISION_HINT=bf16` (recorded in the manifest;
  `dlopt bench` uses it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlopt.errors import ConfigError, first_line
from dlopt.optimize.openvino_ir import save_ir
from dlopt.optimize.quantize.budget import DriftBudget
from dlopt.optimize.quantize.calibration import (
    SampleFeeds,
    calibration_record,
    nncf_quiet,
    open_calibration,
)
from dlopt.optimize.quantize.check import (
    Staged,
    drift_record,
    ir_runner,
    reference_set,
    require_budgets,
)
from dlopt.optimize.quantize.evaluation import EvaluationSet, measure_drift, per_sample
from dlopt.optimize.quantize.options import QuantizeError
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions

# Budget metrics NNCF's accuracy control can steer (higher is better for each validation value).
CONTROLLED_METRICS = ("accuracy_drop", "cosine", "top1_agreement")
HINTS = {"static": "f32", "fp16": "f32", "bf16": "bf16"}
# Ops that mark an attention block (an SDPA export converts to ScaledDotProductAttention).
ATTENTION_OPS = frozenset({"Softmax", "SoftMax", "ScaledDotProductAttention"})
Item = tuple[dict[str, np.ndarray], list[np.ndarray], "np.ndarray | None"]


def quantize_to_ir(
    parent: Path,
    specs: Sequence[TensorSpec],
    parent_manifest: Mapping[str, Any],
    staging: Path,
    options: QuantizeOptions,
    say: Callable[[str], None],
    evaluation: EvaluationSet | None = None,
) -> Staged:
    """An IR for `options.mode` in `staging`, checked against the budget; `evaluation`: the
    FP32 parent's outputs when the caller has them already."""
    import openvino as ov

    from dlopt.backends.openvino_backend import compile_properties

    budgets = options.budgets()
    if options.budget_source == "given":
        _check_budgets_for_nncf(budgets)
    say("converting to OpenVINO")
    try:
        ov_model = ov.convert_model(str(parent))
    except Exception as error:  # OpenVINO's frontends raise their own, unrelated, classes
        raise QuantizeError(
            f"OpenVINO cannot convert {parent}: {first_line(error, 200)}",
            "quantize it for --target onnxruntime, or re-export it with standard ONNX ops",
        ) from error
    names = list(parent_manifest.get("outputs", []))
    if names and len(names) == len(ov_model.outputs):
        for port, name in zip(ov_model.outputs, names, strict=True):
            port.get_tensor().set_names({name})
    if evaluation is None:
        say("running the FP32 parent on the evaluation data")
        evaluation = reference_set(parent, specs, options)
    if options.mode != "static" and options.exclude:
        raise ConfigError(
            f"--exclude is not available with --mode {options.mode}", "drop --exclude"
        )
    staged = staging / "model.xml"
    weights_fp16 = options.mode == "fp16"
    hint = HINTS[options.mode]

    def save_and_measure(model: Any, control: DriftBudget | None) -> dict[str, float]:
        say("saving the IR")
        save_ir(model, staged, compress_to_fp16=weights_fp16)
        say("measuring drift against the FP32 parent")
        return measure_drift(ir_runner(staged, hint), evaluation, [control] if control else [])

    recipe: dict[str, Any] = {}
    if options.mode == "static":
        given = budgets[0] if options.budget_source == "given" else None
        quantized, recipe = _int8(ov_model, specs, options, say, evaluation, given)
        measured = save_and_measure(quantized, given)
        failed = [b for b in budgets if not b.holds(measured)]
        if options.budget_source == "default" and failed:
            # The default budget's fallback: NNCF's accuracy control on the budget it missed.
            say(f"over the default budget ({failed[0]}): NNCF accuracy control")
            quantized, recipe = _int8(ov_model, specs, options, say, evaluation, failed[0])
            measured = save_and_measure(quantized, failed[0])
    else:
        measured = save_and_measure(ov_model, None)
    require_budgets(
        budgets,
        measured,
        f"the {options.precision().upper()} IR of {parent.name}",
        "give more representative --calibration data, or use --mode fp16"
        + (", or relax --max-drift" if options.budget_source == "given" else ""),
        options.budget_source,
        evaluation,
    )
    recipe.update(
        mode=options.mode,
        weights_compressed_to_fp16=weights_fp16,
        compile_properties=compile_properties(hint),
        runtime="openvino",
    )
    return Staged(
        [staging / "model.bin", staged],
        recipe,
        drift_record(evaluation, measured, budgets, options.budget_source),
        format="openvino_ir",
    )


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run bf16 here (its OPTIMIZATION_CAPABILITIES)."""
    import openvino as ov

    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # a plugin without the property: assume not
        return False


def with_hint(
    staged: Staged,
    hint: str,
    evaluation: EvaluationSet,
    options: QuantizeOptions,
    say: Callable[[str], None],
) -> Staged:
    """The same IR files compiled with another precision hint, its drift measured again and
    held to the budget (BudgetNotMetError otherwise)."""
    from dlopt.backends.openvino_backend import compile_properties

    budgets = options.budgets()
    model = staged.files[-1]
    say(f"measuring drift with the {hint} precision hint")
    measured = measure_drift(ir_runner(model, hint), evaluation, budgets)
    require_budgets(
        budgets,
        measured,
        f"the INT8 IR with a {hint} hint",
        "keep the f32 hint",
        options.budget_source,
        evaluation,
    )
    recipe = {**staged.recipe, "compile_properties": compile_properties(hint)}
    drift = drift_record(evaluation, measured, budgets, options.budget_source)
    return Staged(list(staged.files), recipe, drift, format=staged.format)


def _int8(
    ov_model: Any,
    specs: Sequence[TensorSpec],
    options: QuantizeOptions,
    say: Callable[[str], None],
    evaluation: EvaluationSet,
    control: DriftBudget | None,
) -> tuple[Any, dict[str, Any]]:
    """NNCF INT8 of a copy of `ov_model` (so a second try starts from FP32 again)."""
    quantized, recipe, _ = nncf_int8(
        ov_model.clone(),
        specs,
        options.calibration,
        options.calibration_size,
        say,
        seed=options.seed,
        model_type=options.model_type,
        exclude=options.exclude,
        accuracy_control=(evaluation, control) if control else None,
    )
    return quantized, recipe


def _check_budgets_for_nncf(budgets: Sequence[DriftBudget]) -> None:
    if len(budgets) > 1:
        raise ConfigError(
            "--target openvino takes one --max-drift budget (NNCF's accuracy control steers "
            "one metric)",
            f"keep one of {', '.join(CONTROLLED_METRICS)}",
        )
    if budgets and budgets[0].metric not in CONTROLLED_METRICS:
        raise ConfigError(
            f"--max-drift {budgets[0].metric} is not available for --target openvino",
            f"use one of {', '.join(CONTROLLED_METRICS)}",
        )


def nncf_int8(
    ov_model: Any,
    specs: Sequence[TensorSpec],
    calibration_source: str | None,
    calibration_size: int,
    say: Callable[[str], None],
    seed: int = 0,
    model_type: str = "auto",
    exclude: Sequence[str] = (),
    accuracy_control: tuple[EvaluationSet, DriftBudget] | None = None,
) -> tuple[Any, dict[str, Any], SampleFeeds]:
    """INT8 with NNCF on the calibration data: (model, manifest record, calibration feeds).

    The one NNCF path of dlopt (`quantize --target openvino` and `build --precision int8`).
    NNCF's transformer scheme when the graph has attention or `model_type` says so; with
    `accuracy_control`, `quantize_with_accuracy_control` on that evaluation set and budget.
    """
    import nncf

    calibration = open_calibration(calibration_source, specs, calibration_size, seed)
    feeds = SampleFeeds(calibration.data, calibration.samples, "NNCF statistics")
    transformer = model_type == "transformer" or (
        model_type == "auto"
        and bool({op.get_type_name() for op in ov_model.get_ops()} & ATTENTION_OPS)
    )
    common: dict[str, Any] = {
        "subset_size": len(feeds),
        "model_type": nncf.ModelType.TRANSFORMER if transformer else None,
        "ignored_scope": _ignored_scope(ov_model, exclude),
    }
    try:
        with nncf_quiet():
            if accuracy_control is not None:
                evaluation, budget = accuracy_control
                say(f"quantizing with NNCF accuracy control ({budget}) on {len(feeds)} samples")
                quantized = nncf.quantize_with_accuracy_control(
                    ov_model,
                    nncf.Dataset(feeds),
                    nncf.Dataset(per_sample(evaluation), lambda item: item[0]),
                    _validation_fn(budget.metric),
                    max_drop=budget.value if budget.metric == "accuracy_drop" else 1 - budget.value,
                    drop_type=nncf.DropType.ABSOLUTE,
                    **common,
                )
            else:
                say(f"quantizing with NNCF on {len(feeds)} calibration samples")
                quantized = nncf.quantize(ov_model, nncf.Dataset(feeds), **common)
    except (ConfigError, QuantizeError):
        raise
    except Exception as error:
        raise QuantizeError(
            f"NNCF quantization failed: {first_line(error, 200)}",
            "check that the calibration data fits the model inputs, or --exclude the failing op",
        ) from error
    record = {
        "tool": "nncf",
        "nncf_version": nncf.__version__,
        "api": "nncf.quantize_with_accuracy_control" if accuracy_control else "nncf.quantize",
        "nncf_model_type": "transformer" if transformer else None,
        "excluded": list(exclude),
        "calibration": calibration_record(calibration, len(feeds), "nncf default (min-max)"),
    }
    return quantized, record, feeds


def _ignored_scope(ov_model: Any, patterns: Sequence[str]) -> Any:
    """`--exclude` as NNCF's IgnoredScope: OpenVINO op types or node (friendly) names."""
    import nncf

    if not patterns:
        return None
    types = {op.get_type_name() for op in ov_model.get_ops()}
    names = {op.get_friendly_name() for op in ov_model.get_ops()}
    unknown = [p for p in patterns if p not in types and p not in names]
    if unknown:
        raise ConfigError(
            f"--exclude {unknown[0]!r} names no OpenVINO op type or node of the model",
            "on --target openvino give OpenVINO op types (e.g. MatMul, Convolution) or node names",
        )
    return nncf.IgnoredScope(
        names=[p for p in patterns if p in names], types=[p for p in patterns if p in types]
    )


def _validation_fn(metric: str) -> Callable[[Any, Iterable[Item]], tuple[float, list[float]]]:
    """NNCF's validation function for a budget metric: (metric, per-item values), higher is
    better; the FP32 model scores its accuracy, or 1.0 for cosine and agreement."""
    from dlopt.harness.drift import cosine_similarity

    def validate(compiled: Any, items: Iterable[Item]) -> tuple[float, list[float]]:
        port = compiled.output(0)
        per_item: list[float] = []
        produced: list[np.ndarray] = []
        expected: list[np.ndarray] = []
        for feed, reference, label in items:
            output = np.asarray(compiled(feed)[port], dtype=np.float64)
            if metric == "accuracy_drop":
                if label is None:
                    raise ConfigError("--max-drift accuracy_drop needs labelled --eval data")
                per_item.append(float(output.argmax(-1)[0] == label[0]))
            elif metric == "top1_agreement":
                per_item.append(float(output.argmax(-1)[0] == reference[0].argmax(-1)[0]))
            else:
                per_item.append(cosine_similarity(output, reference[0].astype(np.float64)))
            produced.append(output)
            expected.append(reference[0])
        if metric == "cosine" and produced:
            whole = cosine_similarity(np.concatenate(produced), np.concatenate(expected))
            return whole, per_item
        return (float(np.mean(per_item)) if per_item else 0.0), per_item

    return validate
