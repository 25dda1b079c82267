"""`dlopt inspect` for OpenVINO IR, through OpenVINO's model API: `read_model`, `reshape` to
the input specs' example shapes (so every op's shape is static), `get_ordered_ops` and
`get_rt_info` (the runtime and NNCF versions that made it)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlopt.artifacts import artifact_size_bytes
from dlopt.errors import SourceError, first_line
from dlopt.harness.inspect.leaks import LeakCollector
from dlopt.harness.inspect.macs import convolution_macs, matmul_macs
from dlopt.harness.inspect.summary import ModelSummary, PrecisionMix, TensorInfo
from dlopt.specs import TensorSpec

PRECISION_OF = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "int8"}
PRECISION_OF.update({"i4": "int4", "u4": "int4", "f64": "fp64"})
DTYPE_OF = {"f32": "float32", "f16": "float16", "i64": "int64", "i32": "int32", "boolean": "bool"}
COMPUTE_OPS = frozenset(
    {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}
    | {"GroupConvolutionBackpropData"}
)
# Ops between a quantizer and the product that uses its output (weights: Convert, Multiply).
PASS_THROUGH = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Transpose", "Convert", "Multiply"})
PASS_THROUGH |= {"Subtract"}
_TAG = re.compile(r"<\s*([\w.-]+)")


def inspect_ir(path: Path, specs: Sequence[TensorSpec]) -> ModelSummary:
    """Summary of the IR at `path` (its .bin beside it), MACs at the specs' example shapes."""
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
    except Exception as error:
        raise SourceError(
            f"OpenVINO cannot read {path}: {first_line(error)}", "check the .xml and its .bin"
        ) from error
    inputs = [_tensor_info(port) for port in model.inputs]
    outputs = [_tensor_info(port) for port in model.outputs]
    notes: list[str] = []
    macs_at = _reshape_to_examples(model, specs, notes)
    ops = list(model.get_ordered_ops())
    macs, unknown = _macs(ops)
    if unknown:
        notes.append(f"{unknown} matrix products have dynamic shapes: their MACs are not counted")
    weights, zeros = _weights(ops)
    leaks = LeakCollector()
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        tag = _TAG.search(line)
        leaks.scan(f"IR <{tag.group(1) if tag else 'line'}> (line {number + 1})", line)
    rt_info = model.get_rt_info()
    producer = " ".join(
        f"{name} {_rt_value(rt_info, keys)}"
        for name, keys in (("OpenVINO", ["Runtime_version"]), ("NNCF", ["nncf", "version"]))
        if _rt_value(rt_info, keys)
    )
    return ModelSummary(
        model=str(path),
        format="openvino_ir",
        size_bytes=artifact_size_bytes(path),
        inputs=inputs,
        outputs=outputs,
        parameters=sum(weights.values()),
        macs=sum(macs.values()),
        macs_by_op_type=dict(sorted(macs.items())),
        op_histogram=dict(
            Counter(
                op.get_type_name() for op in ops if op.get_type_name() != "Constant"
            ).most_common()
        ),
        precision=_precision_mix(ops, weights),
        zero_weights=zeros,
        macs_at=macs_at,
        producer=producer or None,
        leaks=_merged_by_tag(leaks.results()),
        notes=notes,
    )


def _reshape_to_examples(
    model: Any, specs: Sequence[TensorSpec], notes: list[str]
) -> dict[str, list[int]]:
    """Make every input static at its example shape (specs, else 1 for each dynamic dim)."""
    examples = {spec.name: list(spec.example_shape) for spec in specs}
    shapes = {}
    for port in model.inputs:
        name = port.get_any_name()
        shape = examples.get(name) or [
            dim.get_length() if dim.is_static else 1 for dim in port.get_partial_shape()
        ]
        shapes[name] = shape
    try:
        model.reshape(shapes)
    except Exception as error:
        notes.append(f"cannot reshape to {shapes} ({first_line(error, 120)}): MACs may be missing")
    return shapes


def _macs(ops: Sequence[Any]) -> tuple[Counter[str], int]:
    counted: Counter[str] = Counter()
    unknown = 0
    for op in ops:
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        output = op.get_output_partial_shape(0)
        operands = [op.get_input_partial_shape(index) for index in range(2)]
        if not output.is_static or not all(shape.is_static for shape in operands):
            unknown += 1
            continue
        out = list(output.to_shape())
        first, weight = (list(shape.to_shape()) for shape in operands)
        if kind == "Convolution":
            counted[kind] += convolution_macs(out, weight)
        elif kind == "GroupConvolution":
            counted[kind] += convolution_macs(out, weight[1:])
        else:
            transposed = bool(op.get_attributes().get("transpose_a"))
            inner = first[-2] if transposed and len(first) > 1 else first[-1]
            counted[kind] += matmul_macs(out, inner)
    return counted, unknown


def _weights(ops: Sequence[Any]) -> tuple[dict[str, int], int]:
    """Elements of the Constants by precision (not integer shapes, not FakeQuantize ranges)."""
    import numpy as np

    ranges = {
        id(op.input(index).get_source_output().get_node())
        for op in ops
        if op.get_type_name() == "FakeQuantize"
        for index in range(1, 5)
    }
    counts: Counter[str] = Counter()
    zeros = 0
    for op in ops:
        if op.get_type_name() != "Constant" or id(op) in ranges:
            continue
        precision = PRECISION_OF.get(op.get_output_element_type(0).get_type_name())
        if precision is None:
            continue
        data = op.get_data()
        counts[precision] += int(data.size)
        zeros += int(data.size - np.count_nonzero(data))
    return dict(counts), zeros


def _precision_mix(ops: Sequence[Any], weights: dict[str, int]) -> PrecisionMix:
    """Compute ops are INT8 when an operand comes from a FakeQuantize or an INT8 constant
    (NNCF's pattern; OpenVINO's low-precision transformations then run them in INT8), looking
    through the reshapes and conversions in between."""
    compute: Counter[str] = Counter()
    between: list[dict[str, str]] = []
    for op in ops:
        if op.get_type_name() not in COMPUTE_OPS:
            continue
        if any(_quantized_source(op.input(index).get_source_output()) for index in range(2)):
            compute["int8"] += 1
            continue
        precision = PRECISION_OF.get(op.get_output_element_type(0).get_type_name(), "other")
        compute[precision] += 1
        feeds_quantized = any(
            target.get_node().get_type_name() == "FakeQuantize"
            for target in op.output(0).get_target_inputs()
        )
        if feeds_quantized:
            between.append({"node": op.get_friendly_name(), "op_type": op.get_type_name()})
    pairs = sum(1 for op in ops if op.get_type_name() == "FakeQuantize")
    return PrecisionMix(dict(weights), dict(compute), pairs, between)


def _quantized_source(port: Any, depth: int = 4) -> bool:
    node = port.get_node()
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Constant":
        return PRECISION_OF.get(node.get_output_element_type(0).get_type_name()) in ("int8", "int4")
    if kind in PASS_THROUGH and depth > 0:
        return _quantized_source(node.input(0).get_source_output(), depth - 1)
    return False


def _tensor_info(port: Any) -> TensorInfo:
    shape: list[int | str] = [
        dim.get_length() if dim.is_static else "?" for dim in port.get_partial_shape()
    ]
    element = port.get_element_type().get_type_name()
    try:
        name = port.get_any_name()
    except RuntimeError:
        name = port.get_node().get_friendly_name()
    return TensorInfo(name, shape, DTYPE_OF.get(element, element))


def _rt_value(rt_info: Any, keys: list[str]) -> str:
    try:
        value = rt_info
        for key in keys:
            value = value[key]
        return str(value.astype(str))
    except Exception:  # the entry is absent in IR from other tools
        return ""


def _merged_by_tag(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per IR element name (`<input_model>`), not per line."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in found:
        where = entry["where"].split(" (line")[0]
        kept = merged.setdefault(where, {**entry, "where": where, "count": 0})
        kept["count"] += entry["count"]
    return list(merged.values())
