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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlopt.errors import ConfigError, DloptError, first_line
from dlopt.optimize.quantize.budget import (
    EvaluationSet,
    budgets_hold,
    default_group_size,
    float_groups,
    measure_drift,
)
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
from dlopt.optimize.quantize.options import QuantizeError
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions

SENSITIVITY_SAMPLES = 64
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
                return 0
            assert calibration is not None  # options validation guarantees it
            return _quantize_static(prepared, output, options, excluded, calibration)
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

    reader = ort_reader(calibration.data)
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


def quantize_onnx_within_budget(
    parent: Path,
    specs: Sequence[TensorSpec],
    staging: Path,
    options: QuantizeOptions,
    say: Callable[[str], None],
) -> Staged:
    """INT8 ONNX for the onnxruntime or tensorrt target, kept within `options.max_drift`.

    Over budget, the quantized nodes are ranked by their effect on the output
    (`quantize_sensitivity`) and returned to float a group at a time until the budget holds;
    when it holds only with every node in float, BudgetNotMetError.
    """
    say("pre-processing (shape inference, optimization)")
    prepared, preprocessing = preprocess(parent, staging / "prepared.onnx")
    excluded = nodes_to_exclude(prepared, options.exclude)
    index_nodes: list[str] = []
    if options.mode == "static":
        from dlopt.optimize.quantize.index_paths import index_computing_nodes

        index_nodes = [n for n in index_computing_nodes(prepared) if n not in excluded]
        excluded = [*excluded, *index_nodes]
    calibration = None
    if options.mode == "static":
        calibration = open_calibration(
            options.calibration, specs, options.calibration_size, options.seed
        )
    budgets = options.budgets()
    output = staging / "model.onnx"

    def attempt(keep_float: Sequence[str]) -> tuple[int, dict[str, float]]:
        say(f"quantizing ({options.mode}, {len(keep_float)} extra nodes kept float)")
        samples = quantize_onnx(prepared, output, options, [*excluded, *keep_float], calibration)
        say("measuring drift against the FP32 parent")
        return samples, measure_drift(onnx_runner(output), evaluation, budgets)

    say("running the FP32 parent on the evaluation data")
    evaluation = reference_set(parent, specs, options)
    samples, measured = attempt([])
    attempts = [{"kept_float": 0, **_summary(measured)}]
    kept_float: list[str] = []
    if budgets and not budgets_hold(budgets, measured):
        say("ranking quantized nodes by their effect on the output")
        ranking = _sensitivity_ranking(prepared, output, excluded, options, evaluation)
        # At least one matrix product stays INT8: without one the model is not quantized.
        products = set(_nodes_of_types(prepared, COMPUTE_OPS)) & set(ranking)
        groups = [
            group
            for group in float_groups(ranking, default_group_size(len(ranking)), len(ranking))
            if not products <= set(group)
        ]
        most = len(groups[-1]) if groups else 0
        for group in groups:
            samples, measured = attempt(group)
            attempts.append({"kept_float": len(group), **_summary(measured)})
            if budgets_hold(budgets, measured):
                kept_float = group
                break
        require_budgets(
            budgets,
            measured,
            f"INT8 {parent.name} even with {max(most, 0)} of {len(ranking)} quantized nodes "
            "kept float",
            _budget_hint(options),
            options.budget_source,
            evaluation,
        )
    symmetric = options.target == "tensorrt"
    activation = None if options.mode == "dynamic" else ("QInt8" if symmetric else "QUInt8")
    recipe = {
        "tool": "onnxruntime.quantization",
        "activation_type": activation,
        "weight_type": "QInt8",
        "quant_format": "QDQ" if options.mode == "static" else "QOperator (dynamic)",
        "op_types_quantized": list(DYNAMIC_OP_TYPES) if options.mode == "dynamic" else "all",
        "symmetric": symmetric,
        "preprocessing": preprocessing,
        "excluded_nodes": [name for name in excluded if name not in index_nodes],
        "index_nodes_kept_float": index_nodes,
        "kept_float_for_budget": kept_float,
        "calibration": (
            calibration_record(calibration, samples, options.method) if calibration else {}
        ),
    }
    if options.target == "tensorrt":
        recipe["next_step"] = "dlopt build model.onnx --backend tensorrt --precision int8"
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

    from dlopt.optimize.quantize.sensitivity import rank_by_leaving_out, rank_qdq_nodes

    feeds = _first_samples(evaluation.feeds)
    count = sum(next(iter(feed.values())).shape[0] for feed in feeds)
    reference = [evaluation.reference[0][:count]]
    float_graph = onnx.load(str(prepared), load_external_data=False).graph
    names = {node.name for node in float_graph.node if node.name and node.name not in excluded}
    if options.mode == "static":
        return rank_qdq_nodes(quantized, names, feeds, reference)
    candidates = [
        n.name for n in float_graph.node if n.name in names and n.op_type in DYNAMIC_OP_TYPES
    ]

    def requantize(keep_float: Sequence[str], path: Path) -> None:
        quantize_onnx(prepared, path, options, [*excluded, *keep_float], None)

    return rank_by_leaving_out(candidates, requantize, feeds, reference)


def _nodes_of_types(model: Path, op_types: frozenset[str]) -> list[str]:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in op_types]


def _first_samples(
    feeds: Sequence[Mapping[str, np.ndarray]], limit: int = SENSITIVITY_SAMPLES
) -> list[dict[str, np.ndarray]]:
    """Feeds holding the first `limit` samples: enough to rank nodes, cheap to run twice."""
    chosen: list[dict[str, np.ndarray]] = []
    count = 0
    for feed in feeds:
        if count >= limit:
            break
        take = min(limit - count, next(iter(feed.values())).shape[0])
        chosen.append({name: value[:take] for name, value in feed.items()})
        count += take
    return chosen


def _summary(measured: Mapping[str, float]) -> dict[str, Any]:
    from dlopt.jsonio import json_number

    keys = ("accuracy_drop", "cosine", "top1_agreement", "sqnr_db")
    return {key: json_number(measured[key], 6) for key in keys if key in measured}
