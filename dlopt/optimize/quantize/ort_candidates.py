"""The ONNX Runtime candidates of `dlopt quantize`: dynamic and static INT8, each held to the
accuracy budget by a bounded fallback (at most MAX_FALLBACK_STEPS steps that return the most
harmful nodes to float), sharing one pre-processing, NNCF pass, calibration stream and
evaluation set (`OrtJob`); dynamic INT8 after SmoothQuant is in smoothquant_dynamic.py. The
quantizers themselves are glue in onnxruntime.py (ORT) and onnx_nncf.py (NNCF's transformer
scheme for graphs with attention).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.optimize.quantize.budget import budgets_hold, default_group_size, float_groups
from dlopt.optimize.quantize.calibration import calibration_record
from dlopt.optimize.quantize.check import (
    Staged,
    drift_record,
    onnx_runner,
    require_budgets,
)
from dlopt.optimize.quantize.evaluation import EvaluationSet, measure_drift
from dlopt.optimize.quantize.index_paths import index_computing_nodes
from dlopt.optimize.quantize.onnxruntime import (
    COMPUTE_OPS,
    DYNAMIC_OP_TYPES,
    dynamic_recipe,
    nodes_to_exclude,
    quantize_onnx,
)
from dlopt.optimize.quantize.ort_job import OrtJob
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions

# Samples the fallback ranks nodes on: enough to rank, cheap to run once per node.
SENSITIVITY_SAMPLES = 32
# Re-quantizations the fallback may try before it gives up (the issue-17 MiniLM search ran
# 12 minutes through 10 steps to a model slower than dynamic INT8).
MAX_FALLBACK_STEPS = 4
# Products of the cheap ranking whose effect on the output is measured one by one.
SHORTLIST = 12


def quantize_onnx_within_budget(
    parent: Path,
    specs: Sequence[TensorSpec],
    staging: Path,
    options: QuantizeOptions,
    say: Callable[[str], None],
) -> Staged:
    """INT8 ONNX for the onnxruntime or tensorrt target, kept within the budget.

    Static on ONNX Runtime, when the budget held only with nodes returned to float, is compared
    with dynamic INT8, and on graphs with attention with dynamic INT8 after SmoothQuant (timed
    interleaved against FP32): the fastest within budget is written, so the accuracy fallback
    never returns a model slower than dynamic would be.
    """
    job = OrtJob(parent, specs, staging, options, say)
    if options.mode == "dynamic":
        return dynamic_candidate(job, staging / "dynamic")
    static = static_candidate(job, staging / "static")
    if options.target != "onnxruntime" or not static.recipe.get("kept_float_for_budget"):
        return static
    from dlopt.optimize.quantize.candidates import Candidate, choose

    say("static met the budget only with nodes in float: comparing with dynamic INT8")
    job.fallback = False  # plain dynamic is the bar: with nodes in float it is only slower
    candidates = [
        Candidate("static", lambda folder: static, "onnxruntime"),
        Candidate("dynamic", lambda folder: dynamic_candidate(job, folder), "onnxruntime"),
    ]
    if job.attention():  # NNCF's pass is made already: SmoothQuant + dynamic costs little more
        from dlopt.optimize.quantize.smoothquant_dynamic import smoothquant_dynamic_candidate

        candidates.insert(
            1,
            Candidate(
                "dynamic after SmoothQuant",
                lambda folder: smoothquant_dynamic_candidate(job, folder),
                "onnxruntime",
            ),
        )
    return choose(
        candidates,
        job.parent,
        job.specs,
        job.evaluation(),
        staging,
        say,
    )


def dynamic_candidate(job: OrtJob, folder: Path) -> Staged:
    """`quantize_dynamic`, and when over budget the most harmful products back in float
    (ranked by leaving each out; at most MAX_FALLBACK_STEPS re-quantizations)."""
    options = replace(job.options, mode="dynamic")
    folder.mkdir(parents=True, exist_ok=True)
    prepared, preprocessing = job.prepared()
    excluded = nodes_to_exclude(prepared, options.exclude)
    output = folder / "model.onnx"
    evaluation, budgets = job.evaluation(), options.budgets()

    def attempt(keep_float: Sequence[str]) -> dict[str, float]:
        job.say(f"quantizing (dynamic, {len(keep_float)} extra nodes kept float)")
        quantize_onnx(prepared, output, options, [*excluded, *keep_float], None)
        job.say("measuring drift against the FP32 parent")
        return measure_drift(onnx_runner(output), evaluation, budgets)

    measured, kept_float, attempts = _within_budget(
        attempt,
        lambda: _sensitivity_ranking(prepared, output, excluded, options, evaluation),
        _nodes_of_types(prepared, COMPUTE_OPS),
        job,
        budgets,
        f"dynamic INT8 {job.parent.name}",
    )
    recipe = dynamic_recipe(preprocessing, excluded, kept_float)
    drift = drift_record(evaluation, measured, budgets, options.budget_source, attempts=attempts)
    return Staged([output], recipe, drift)


def static_candidate(job: OrtJob, folder: Path) -> Staged:
    """Static INT8: NNCF's transformer scheme for graphs with attention on ONNX Runtime
    (onnx_nncf.py), else ORT's `quantize_static` (U8S8, or S8S8 for TensorRT)."""
    options = replace(job.options, mode="static")
    folder.mkdir(parents=True, exist_ok=True)
    if job.attention():
        return _static_transformer(job, folder, options)
    prepared, preprocessing = job.prepared()
    excluded = nodes_to_exclude(prepared, options.exclude)
    index_nodes = [name for name in index_computing_nodes(prepared) if name not in excluded]
    excluded = [*excluded, *index_nodes]
    calibration = job.calibration()
    output = folder / "model.onnx"
    evaluation, budgets = job.evaluation(), options.budgets()
    samples = 0

    def attempt(keep_float: Sequence[str]) -> dict[str, float]:
        nonlocal samples
        job.say(f"quantizing (static, {len(keep_float)} extra nodes kept float)")
        samples = quantize_onnx(prepared, output, options, [*excluded, *keep_float], calibration)
        job.say("measuring drift against the FP32 parent")
        return measure_drift(onnx_runner(output), evaluation, budgets)

    measured, kept_float, attempts = _within_budget(
        attempt,
        lambda: _sensitivity_ranking(prepared, output, excluded, options, evaluation),
        _nodes_of_types(prepared, COMPUTE_OPS),
        job,
        budgets,
        f"INT8 {job.parent.name}",
    )
    symmetric = options.target == "tensorrt"
    recipe = {
        "tool": "onnxruntime.quantization",
        "mode": "static",
        "activation_type": "QInt8" if symmetric else "QUInt8",
        "weight_type": "QInt8",
        "quant_format": "QDQ",
        "op_types_quantized": "all",
        "symmetric": symmetric,
        "preprocessing": preprocessing,
        "excluded_nodes": [name for name in excluded if name not in index_nodes],
        "index_nodes_kept_float": index_nodes,
        "kept_float_for_budget": kept_float,
        "calibration": calibration_record(calibration, samples, options.method),
        "runtime": options.target,
    }
    if options.target == "tensorrt":
        recipe["next_step"] = "dlopt build model.onnx --backend tensorrt --precision int8"
    drift = drift_record(evaluation, measured, budgets, options.budget_source, attempts=attempts)
    return Staged([output], recipe, drift)


def _within_budget(
    attempt: Callable[[Sequence[str]], dict[str, float]],
    rank: Callable[[], list[str]],
    products: Sequence[str],
    job: OrtJob,
    budgets: Sequence[Any],
    what: str,
) -> tuple[dict[str, float], list[str], list[dict[str, Any]]]:
    """Quantize; over budget, return ranked nodes to float a group at a time, at most
    MAX_FALLBACK_STEPS times. Returns (drift, nodes kept float, attempts); raises
    BudgetNotMetError (one line, nothing kept) when no step meets the budget."""
    measured = attempt([])
    attempts = [{"kept_float": 0, **_summary(measured)}]
    kept_float: list[str] = []
    if not budgets or budgets_hold(budgets, measured):
        return measured, kept_float, attempts
    if not job.fallback:
        require_budgets(
            budgets,
            measured,
            f"{what} (no fallback: another candidate met the budget as it was made)",
            _budget_hint(job.options),
            job.options.budget_source,
            job.evaluation(),
        )
    job.say("ranking quantized nodes by their effect on the output")
    ranking = rank()
    # At least one matrix product stays INT8: without one the model is not quantized. (No
    # products given: the ranked units are quantizers, and one of them stays.)
    quantized_products = set(products) & set(ranking) if products else set(ranking)
    groups = [
        group
        for group in float_groups(ranking, default_group_size(len(ranking)), len(ranking))
        if not quantized_products <= set(group)
    ][:MAX_FALLBACK_STEPS]
    for group in groups:
        measured = attempt(group)
        attempts.append({"kept_float": len(group), **_summary(measured)})
        if budgets_hold(budgets, measured):
            kept_float = group
            break
    most = len(groups[-1]) if groups else 0
    require_budgets(
        budgets,
        measured,
        f"{what} even with {most} of {len(ranking)} quantized nodes kept float",
        _budget_hint(job.options),
        job.options.budget_source,
        job.evaluation(),
    )
    return measured, kept_float, attempts


def _static_transformer(job: OrtJob, folder: Path, options: QuantizeOptions) -> Staged:
    """NNCF's transformer recipe; over budget, the most harmful activation quantizers are
    removed from the quantized graph (no second calibration), at most MAX_FALLBACK_STEPS
    times."""
    from dlopt.optimize.quantize.qdq_edit import float_matmul_weights, remove_activation_quantizers

    calibration = job.calibration()
    excluded = nodes_to_exclude(job.parent, options.exclude)
    output = folder / "model.onnx"
    evaluation, budgets = job.evaluation(), options.budgets()
    quantized, record = job.nncf_transformer()

    originals: dict[str, Any] = {}

    def attempt(keep_float: Sequence[str]) -> dict[str, float]:
        if keep_float and not originals:
            originals.update(float_matmul_weights(job.parent))
        remove_activation_quantizers(quantized, output, keep_float, originals)
        job.say(f"measuring drift ({len(keep_float)} activation quantizers removed)")
        return measure_drift(onnx_runner(output), evaluation, budgets)

    def rank() -> list[str]:
        from dlopt.optimize.quantize.sensitivity import rank_activation_quantizers

        feeds, reference = evaluation.head(SENSITIVITY_SAMPLES)
        return rank_activation_quantizers(quantized, feeds, reference)

    measured, kept_float, attempts = _within_budget(
        attempt, rank, [], job, budgets, f"static INT8 {job.parent.name}"
    )
    recipe = {
        **record,
        "mode": "static",
        "excluded_nodes": excluded,
        "kept_float_for_budget": kept_float,
        "calibration": calibration_record(calibration, record["samples"], "nncf (mean min-max)"),
        "runtime": "onnxruntime",
    }
    drift = drift_record(evaluation, measured, budgets, options.budget_source, attempts=attempts)
    return Staged([output], recipe, drift)


def _budget_hint(options: QuantizeOptions) -> str:
    others = "use --mode dynamic or --target openvino (NNCF)"
    if options.mode == "dynamic":
        others = "use --target openvino (NNCF) with --calibration DATA"
    if options.budget_source == "given":
        return f"relax --max-drift, give more representative --calibration data, or {others}"
    return f"give more representative --calibration data, or {others}"


def _sensitivity_ranking(
    prepared: Path,
    quantized: Path,
    excluded: Sequence[str],
    options: QuantizeOptions,
    evaluation: EvaluationSet,
) -> list[str]:
    """Node names of the float graph, most harmful in INT8 first (see quantize_sensitivity)."""
    import onnx

    from dlopt.optimize.quantize.sensitivity import (
        rank_by_input_quantization,
        rank_by_quantizing_alone,
        rank_qdq_nodes,
    )

    feeds, reference = evaluation.head(SENSITIVITY_SAMPLES)
    float_graph = onnx.load(str(prepared), load_external_data=False).graph
    names = {node.name for node in float_graph.node if node.name and node.name not in excluded}
    if options.mode == "static":
        return rank_qdq_nodes(quantized, names, feeds, reference)
    weights = {tensor.name for tensor in float_graph.initializer}
    # ORT's dynamic MatMul quantizes products with a constant weight only: keeping an
    # activation x activation MatMul float changes nothing.
    candidates = [
        n.name
        for n in float_graph.node
        if n.name in names
        and n.op_type in DYNAMIC_OP_TYPES
        and (n.op_type != "MatMul" or any(name in weights for name in n.input))
    ]
    # Cheap local ranking first, then the output effect of the likeliest (one ORT session each).
    ranked = rank_by_input_quantization(prepared, candidates, feeds)
    weighted = {
        n.name
        for n in float_graph.node
        if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights
    }
    shortlist = [name for name in ranked if name in weighted][:SHORTLIST]
    first = rank_by_quantizing_alone(prepared, shortlist, feeds, reference)
    return first + [name for name in ranked if name not in first]


def _nodes_of_types(model: Path, op_types: frozenset[str]) -> list[str]:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in op_types]


def _summary(measured: Mapping[str, float]) -> dict[str, Any]:
    from dlopt.jsonio import json_number

    keys = ("accuracy_drop", "cosine", "top1_agreement", "sqnr_db")
    return {key: json_number(measured[key], 6) for key in keys if key in measured}
