"""INT8 ONNX with `onnxruntime.quantization` (glue only), for the onnxruntime and tensorrt
targets.

- dynamic: `quantize_dynamic`, QInt8 weights, per-channel by default (QUInt8 weights gave no
  speedup and per-tensor lost accuracy on a MiniLM here);
- static, onnxruntime: `quantize_static` in QDQ format with QUInt8 activations and QInt8
  weights (U8S8): ORT's default S8S8 QDQ ran slower than FP32 on x86 here, U8S8 3x faster;
- static, tensorrt: explicit Q/DQ with symmetric QInt8 activations and weights (S8S8), the
  form TensorRT builds INT8 engines from (it has no implicit INT8 calibration any more).
ORT's pre-processing (shape inference, optimization) runs first; symbolic shape inference fails
on transformer exports, so it falls back to `skip_symbolic_shape=True`, then to the unprocessed
model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import ConfigError, DloptError, first_line
from dlopt.optimize.onnx_value_info import clear_value_info
from dlopt.optimize.quantize.budget import budgets_hold, default_group_size, float_groups
from dlopt.optimize.quantize.calibration import (
    Calibration,
    calibration_record,
    open_calibration,
    ort_reader,
)
from dlopt.optimize.quantize.check import (
    Staged,
    drift_record,
    onnx_runner,
    reference_set,
    require_budgets,
)
from dlopt.optimize.quantize.evaluation import EvaluationSet, measure_drift
from dlopt.optimize.quantize.options import QuantizeError
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions


# Samples the fallback ranks nodes on: enough to rank, cheap to run once per node.
SENSITIVITY_SAMPLES = 32
# Re-quantizations the fallback may try before it gives up (the issue-17 MiniLM search ran
# 12 minutes through 10 steps to a model slower than dynamic INT8).
MAX_FALLBACK_STEPS = 4
# The matrix products INT8 is for; a budget met only with all of them in float is not met.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU"})
# Dynamic INT8 pays off for weight-heavy matrix products (transformers, RNNs). ORT's default
# also turns Conv into ConvInteger, which ran 6x slower than FP32 on the digits CNN here
# (benchmarks/quantize_speedup.py): convolutions are for --mode static.
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Attention", "LSTM", "Gather", "EmbedLayerNormalization")


def preprocess(model: Path, output: Path) -> tuple[Path, str]:
    """ORT's quant_pre_process, with its documented fallbacks; returns (model, what ran).

    Runs from a scratch folder beside `output`, removed afterwards: ORT's symbolic shape
    inference saves `sym_shape_infer_temp.onnx` and uuid-named external data files into the
    current directory when it fails (a hard-coded relative path), which would otherwise litter
    the user's working directory (90 MB for a MiniLM).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model, output = model.resolve(), output.resolve()
    scratch = output.parent / "preprocess-scratch"
    scratch.mkdir(exist_ok=True)
    try:
        for skip_symbolic, label in ((False, "full"), (True, "skip_symbolic_shape")):
            try:
                # It prints and logs its shape-inference failures itself; the label records
                # what ran.
                with (
                    contextlib.chdir(scratch),
                    _logging_off(),
                    contextlib.redirect_stdout(io.StringIO()),
                ):
                    quant_pre_process(str(model), str(output), skip_symbolic_shape=skip_symbolic)
                return output, label
            except Exception:  # ORT raises plain Exceptions here: try the next level
                continue
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return model, "none (pre-processing failed; quantizing the model as exported)"


@contextlib.contextmanager
def _logging_off() -> Iterator[None]:
    """ORT's pre-processing logs every failed fallback with a traceback (logger.error) and
    symbolic shape inference warns per node; the manifest records which level ran."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def nodes_to_exclude(model: Path, patterns: Sequence[str]) -> list[str]:
    """Node names matching `--exclude` given as a node name or an op type."""
    import onnx

    if not patterns:
        return []
    graph = onnx.load(str(model), load_external_data=False).graph
    known = {node.name for node in graph.node} | {node.op_type for node in graph.node}
    unknown = [pattern for pattern in patterns if pattern not in known]
    if unknown:
        raise ConfigError(
            f"--exclude {unknown[0]!r} names no node or op type of the model",
            "give a node name or an op type (e.g. Gemm, MatMul) from the ONNX graph",
        )
    return [node.name for node in graph.node if node.name in patterns or node.op_type in patterns]


def quantize_onnx(
    prepared: Path,
    output: Path,
    options: QuantizeOptions,
    excluded: Sequence[str],
    calibration: Calibration | None,
) -> int:
    """Quantize `prepared` into `output` as `options` say (mode, target, per-channel, method);
    returns the calibration samples read (0 if none).

    Raises QuantizeError when ONNX Runtime fails, DataError for bad calibration data.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet_root_logger():
            if options.mode == "dynamic":
                quantize_dynamic(
                    prepared,
                    output,
                    op_types_to_quantize=list(DYNAMIC_OP_TYPES),
                    per_channel=options.per_channel,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(excluded) or None,
                )
                clear_value_info(output)  # see dlopt/optimize/onnx_value_info.py
                return 0
            assert calibration is not None  # options validation guarantees it
            samples = _quantize_static(prepared, output, options, excluded, calibration)
            clear_value_info(output)
            return samples
    except DloptError:
        raise
    except Exception as error:
        raise QuantizeError(
            f"ONNX Runtime's {options.mode} quantization failed: {first_line(error, 200)}",
            "try --mode dynamic, another --method, or --exclude the failing op type",
        ) from error


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantizer logs through the root logger, e.g. "Axis 1 is out-of-range" for every
    LayerNorm weight; they say nothing the manifest does not."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_static(
    prepared: Path,
    output: Path,
    options: QuantizeOptions,
    excluded: Sequence[str],
    calibration: Calibration,
) -> int:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = ort_reader(calibration.data, calibration.samples)
    # Graphs fused by ORT's optimizer have tensors of unknown type without DefaultTensorType.
    extra: dict[str, Any] = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    activation = QuantType.QUInt8
    if options.target == "tensorrt":
        activation = QuantType.QInt8
        extra.update(ActivationSymmetric=True, WeightSymmetric=True)
    quantize_static(
        prepared,
        output,
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=options.per_channel,
        activation_type=activation,
        weight_type=QuantType.QInt8,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[options.method],
        nodes_to_exclude=list(excluded) or None,
        extra_options=extra,
    )
    return int(reader.samples)


@dataclass
class OrtJob:
    """What every ONNX Runtime candidate of one `dlopt quantize` shares, each part made once
    when first needed: ORT's pre-processing, the calibration stream, the evaluation set."""

    parent: Path
    specs: Sequence[TensorSpec]
    staging: Path
    options: QuantizeOptions
    say: Callable[[str], None]
    _prepared: tuple[Path, str] | None = None
    _calibration: Calibration | None = None
    _evaluation: EvaluationSet | None = None
    _attention: bool | None = None

    def prepared(self) -> tuple[Path, str]:
        if self._prepared is None:
            self.say("pre-processing (shape inference, optimization)")
            self._prepared = preprocess(self.parent, self.staging / "prepared.onnx")
        return self._prepared

    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = open_calibration(
                self.options.calibration,
                self.specs,
                self.options.calibration_size,
                self.options.seed,
            )
        return self._calibration

    def evaluation(self) -> EvaluationSet:
        if self._evaluation is None:
            self.say("running the FP32 parent on the evaluation data")
            self._evaluation = reference_set(self.parent, self.specs, self.options)
        return self._evaluation

    def attention(self) -> bool:
        """Whether static INT8 takes the transformer recipe (onnx_nncf.py)."""
        if self._attention is None:
            from dlopt.optimize.quantize.onnx_nncf import has_attention

            wanted = self.options.model_type
            self._attention = self.options.target == "onnxruntime" and (
                wanted == "transformer" or (wanted == "auto" and has_attention(self.parent))
            )
        return self._attention


def quantize_onnx_within_budget(
    parent: Path,
    specs: Sequence[TensorSpec],
    staging: Path,
    options: QuantizeOptions,
    say: Callable[[str], None],
) -> Staged:
    """INT8 ONNX for the onnxruntime or tensorrt target, kept within the budget.

    Static on ONNX Runtime, when the budget held only with nodes returned to float, is compared
    with dynamic INT8 (timed interleaved against FP32): the faster within budget is written,
    so the accuracy fallback never returns a model slower than dynamic would be.
    """
    job = OrtJob(parent, specs, staging, options, say)
    if options.mode == "dynamic":
        return dynamic_candidate(job, staging / "dynamic")
    static = static_candidate(job, staging / "static")
    if options.target != "onnxruntime" or not static.recipe.get("kept_float_for_budget"):
        return static
    from dlopt.optimize.quantize.auto import Candidate, choose

    say("static met the budget only with nodes in float: comparing with dynamic INT8")
    return choose(
        [
            Candidate("static", lambda folder: static, "onnxruntime"),
            Candidate("dynamic", lambda folder: dynamic_candidate(job, folder), "onnxruntime"),
        ],
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
    recipe: dict[str, Any] = {
        "tool": "onnxruntime.quantization",
        "mode": "dynamic",
        "activation_type": None,
        "weight_type": "QInt8",
        "quant_format": "QOperator (dynamic)",
        "op_types_quantized": list(DYNAMIC_OP_TYPES),
        "symmetric": False,
        "preprocessing": preprocessing,
        "excluded_nodes": excluded,
        "kept_float_for_budget": kept_float,
        "calibration": {},
        "runtime": "onnxruntime",
    }
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
        "excluded_nodes": excluded,
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
    from dlopt.optimize.quantize.onnx_nncf import nncf_transformer_int8
    from dlopt.optimize.quantize.qdq_edit import float_matmul_weights, remove_activation_quantizers

    calibration = job.calibration()
    excluded = nodes_to_exclude(job.parent, options.exclude)
    quantized = folder / "nncf.onnx"
    output = folder / "model.onnx"
    evaluation, budgets = job.evaluation(), options.budgets()
    job.say(f"quantizing with NNCF's transformer scheme on {calibration.samples} samples")
    record = nncf_transformer_int8(job.parent, quantized, calibration, excluded)

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
    quantized.unlink(missing_ok=True)
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

    from dlopt.optimize.quantize.sensitivity import rank_by_input_quantization, rank_qdq_nodes

    feeds, reference = evaluation.head(SENSITIVITY_SAMPLES)
    float_graph = onnx.load(str(prepared), load_external_data=False).graph
    names = {node.name for node in float_graph.node if node.name and node.name not in excluded}
    if options.mode == "static":
        return rank_qdq_nodes(quantized, names, feeds, reference)
    candidates = [
        n.name for n in float_graph.node if n.name in names and n.op_type in DYNAMIC_OP_TYPES
    ]
    return rank_by_input_quantization(prepared, candidates, feeds)


def _nodes_of_types(model: Path, op_types: frozenset[str]) -> list[str]:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in op_types]


def _summary(measured: Mapping[str, float]) -> dict[str, Any]:
    from dlopt.jsonio import json_number

    keys = ("accuracy_drop", "cosine", "top1_agreement", "sqnr_db")
    return {key: json_number(measured[key], 6) for key in keys if key in measured}
