"""Dynamic INT8 after SmoothQuant: a `--mode auto` candidate on ONNX Runtime for graphs with
attention, made from the NNCF pass the static candidate already ran.

Why: on ORT's CPU kernels static INT8 cannot match dynamic INT8's speed on a transformer.
DynamicQuantizeMatMul quantizes its activation inside the GEMM kernel, while a QDQ graph runs a
separate QuantizeLinear per activation, SmoothQuant's Mul per activation and the bias Adds
outside the integer GEMM (profiled on all-MiniLM-L6-v2, 1 thread: GEMMs 3.8 ms static against
4.1 ms dynamic, but 0.9 ms of those extra nodes). SmoothQuant's per-channel Mul cannot be
folded into the QuantizeLinear either (a per-axis scale on the last axis ran 30 ms instead of
0.2 ms in ORT 1.32). Plain dynamic INT8 is fast but loses accuracy on the FFN-down products,
whose GELU outputs have outlier channels (cosine 0.993 on MiniLM); SmoothQuant's scales move
those outliers into the weights, after which dynamic INT8 is as accurate as static (MiniLM
0.998, rxnfp's BERT 0.9999) and 1.5-4% faster than it (3-4% slower than plain dynamic).

How: NNCF's transformer scheme (onnx_nncf.py) has inserted the SmoothQuant Muls and divided
the weights by their scales; removing every activation quantizer from its graph, with each
MatMul's float weight taken from the FP32 parent and divided by the same scale
(qdq_edit.remove_activation_quantizers), leaves the float model with SmoothQuant applied, which
ORT's `quantize_dynamic` then quantizes as the plain dynamic candidate does. NNCF's bias
correction (made for its INT8 weights' error) stays in the biases: it moves the float model's
output by 0.05% (relative L2, text sample; the Muls without the weights divided: 92%).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dlopt.errors import first_line
from dlopt.optimize.quantize.calibration import calibration_record
from dlopt.optimize.quantize.check import Staged, drift_record, onnx_runner, require_budgets
from dlopt.optimize.quantize.evaluation import measure_drift
from dlopt.optimize.quantize.onnxruntime import (
    dynamic_recipe,
    nodes_to_exclude,
    preprocess,
    quantize_onnx,
)
from dlopt.optimize.quantize.options import QuantizeError

if TYPE_CHECKING:
    from dlopt.optimize.quantize.ort_job import OrtJob

SMOOTHING_MARK = "nncf_smooth_quant"  # NNCF names its SmoothQuant Mul nodes with this


def smoothed_float_model(quantized: Path, parent: Path, output: Path) -> int:
    """Write `output`: the FP32 `parent` with the SmoothQuant Muls of NNCF's QDQ model
    `quantized` and the matching weights, and no quantizer. Returns how many Muls it has."""
    import onnx

    from dlopt.optimize.quantize.qdq_edit import (
        activation_dequantizers,
        float_matmul_weights,
        remove_activation_quantizers,
    )

    model = onnx.load(str(quantized), load_external_data=False)
    dequantizers = activation_dequantizers(model)
    remove_activation_quantizers(quantized, output, dequantizers, float_matmul_weights(parent))
    # Removing quantizers keeps every Mul: count them in the graph already read.
    return sum(node.op_type == "Mul" and SMOOTHING_MARK in node.name for node in model.graph.node)


def smoothquant_dynamic_candidate(job: OrtJob, folder: Path) -> Staged:
    """Dynamic INT8 of the SmoothQuant-ed float model (module docstring); no fallback: over
    the budget it raises BudgetNotMetError and `--mode auto` lists it as such."""
    options = replace(job.options, mode="dynamic")
    folder.mkdir(parents=True, exist_ok=True)
    quantized, record = job.nncf_transformer()
    excluded = nodes_to_exclude(job.parent, options.exclude)
    smoothed = folder / "smoothed.onnx"
    job.say("applying SmoothQuant's scales to the float model")
    try:
        smoothing = smoothed_float_model(quantized, job.parent, smoothed)
    except Exception as error:  # a graph NNCF quantized in a way the edit does not follow:
        # this candidate fails (--mode auto lists it) and the others still run
        raise QuantizeError(
            f"SmoothQuant's scales could not be applied to {job.parent.name}: "
            f"{first_line(error, 200)}",
            "choose --mode static or --mode dynamic",
        ) from error
    prepared, preprocessing = preprocess(smoothed, folder / "prepared.onnx")
    output = folder / "model.onnx"
    job.say("quantizing (dynamic, after SmoothQuant)")
    quantize_onnx(prepared, output, options, excluded, None)
    for scratch in {smoothed, prepared}:
        scratch.unlink(missing_ok=True)
    job.say("measuring drift against the FP32 parent")
    evaluation, budgets = job.evaluation(), options.budgets()
    measured = measure_drift(onnx_runner(output), evaluation, budgets)
    require_budgets(
        budgets,
        measured,
        f"dynamic INT8 after SmoothQuant of {job.parent.name}",
        "relax --max-drift or give more representative --calibration data",
        options.budget_source,
        evaluation,
    )
    calibration = job.calibration()
    recipe = {
        **dynamic_recipe(preprocessing, excluded, []),
        "tool": "nncf (SmoothQuant scales) + onnxruntime.quantization",
        "smoothquant": {
            "scales_from": f"nncf {record['nncf_version']}, transformer scheme",
            "muls": smoothing,
        },
        "calibration": calibration_record(calibration, record["samples"], "nncf SmoothQuant"),
    }
    drift = drift_record(evaluation, measured, budgets, options.budget_source)
    return Staged([output], recipe, drift)
