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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import ConfigError, DloptError, first_line
from dlopt.optimize.onnx_value_info import clear_value_info
from dlopt.optimize.quantize.calibration import (
    Calibration,
    ort_reader,
)
from dlopt.optimize.quantize.options import QuantizeError

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions


# The matrix products INT8 is for; a budget met only with all of them in float is not met.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU"})
# Dynamic INT8 pays off for weight-heavy matrix products (transformers, RNNs). ORT's default
# also turns Conv into ConvInteger, which ran 6x slower than FP32 on the digits CNN here
# (benchmarks/quantize_speedup.py): convolutions are for --mode static.
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Attention", "LSTM", "Gather", "EmbedLayerNormalization")


def dynamic_recipe(
    preprocessing: str, excluded: Sequence[str], kept_float: Sequence[str]
) -> dict[str, Any]:
    """The manifest's record of a `quantize_dynamic` run (quantize_onnx, mode dynamic)."""
    return {
        "tool": "onnxruntime.quantization",
        "mode": "dynamic",
        "activation_type": None,
        "weight_type": "QInt8",
        "quant_format": "QOperator (dynamic)",
        "op_types_quantized": list(DYNAMIC_OP_TYPES),
        "symmetric": False,
        "preprocessing": preprocessing,
        "excluded_nodes": list(excluded),
        "kept_float_for_budget": list(kept_float),
        "calibration": {},
        "runtime": "onnxruntime",
    }


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
