"""`dlopt inspect` for ONNX files: onnx shape inference at the input specs' example shapes
gives every tensor's shape, from which the matrix products' MACs follow (`macs.py`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlopt.artifacts import artifact_size_bytes
from dlopt.errors import first_line
from dlopt.harness.inspect.leaks import LeakCollector
from dlopt.harness.inspect.macs import convolution_macs, matmul_macs, transposed_convolution_macs
from dlopt.harness.inspect.summary import ModelSummary, PrecisionMix, TensorInfo
from dlopt.specs import TensorSpec

# onnx.TensorProto element types as the precision mix names them.
PRECISION_OF = {1: "fp32", 10: "fp16", 16: "bf16", 3: "int8", 2: "int8", 22: "int4", 21: "int4"}
PRECISION_OF.update({6: "int32", 11: "fp64"})
DTYPE_OF = {1: "float32", 10: "float16", 16: "bfloat16", 7: "int64", 6: "int32", 9: "bool"}
FLOAT_TYPES = frozenset({1, 10, 11, 16})
# Matrix products: op type -> (index of the input whose shape gives the inner size, or the
# weight for convolutions).
CONVOLUTIONS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
MATMULS = {
    "MatMul": 0,
    "MatMulInteger": 0,
    "QLinearMatMul": 0,
    "MatMulIntegerToFloat": 0,
    "DynamicQuantizeMatMul": 0,
}
GEMMS = ("Gemm", "QGemm")
INTEGER_OPS = frozenset(
    {"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "MatMulIntegerToFloat"}
    | {"DynamicQuantizeMatMul", "QGemm", "QAttention", "DynamicQuantizeLSTM", "MatMulNBits"}
)
COMPUTE_OPS = (
    frozenset(
        {*CONVOLUTIONS, *MATMULS, *GEMMS, "ConvTranspose", "Attention", "LSTM", "GRU", "Einsum"}
    )
    | INTEGER_OPS
)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def inspect_onnx(path: Path, specs: Sequence[TensorSpec]) -> ModelSummary:
    """Summary of the ONNX model at `path`, MACs at the specs' example shapes."""
    from dlopt.onnx_safety import read_onnx_structure

    model = read_onnx_structure(path)
    graph = model.graph
    notes: list[str] = []
    shapes, types = _inferred(model, specs, notes)
    constants = {tensor.name for tensor in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    macs_by_op, unknown = _macs(graph.node, shapes)
    if unknown:
        notes.append(
            f"{unknown} matrix products have shapes shape inference could not give: "
            "their MACs are not counted"
        )
    weights, zeros = _weights(graph, path.parent)
    leaks = LeakCollector()
    _scan_leaks(model, leaks)
    return ModelSummary(
        model=str(path),
        format="onnx",
        size_bytes=artifact_size_bytes(path),
        inputs=[_tensor_info(info) for info in graph.input if info.name not in constants],
        outputs=[_tensor_info(info) for info in graph.output],
        parameters=sum(weights.values()),
        macs=sum(macs_by_op.values()),
        macs_by_op_type=dict(sorted(macs_by_op.items())),
        op_histogram=dict(Counter(_op_name(node) for node in graph.node).most_common()),
        precision=_precision_mix(graph, weights, types, constants),
        zero_weights=zeros,
        macs_at={spec.name: list(spec.example_shape) for spec in specs},
        producer=f"{model.producer_name} {model.producer_version}".strip() or None,
        opset={entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        leaks=leaks.results(),
        notes=notes,
    )


def _inferred(
    model: Any, specs: Sequence[TensorSpec], notes: list[str]
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Shapes (static, at the example sizes) and element types of every tensor."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    examples = {spec.name: spec.example_shape for spec in specs}
    for graph_input in fixed.graph.input:
        shape = examples.get(graph_input.name)
        dims = graph_input.type.tensor_type.shape.dim
        if shape is None or len(shape) != len(dims):
            continue
        for dim, size in zip(dims, shape, strict=True):
            dim.Clear()
            dim.dim_value = size
    try:
        fixed = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception as error:  # a custom domain or a malformed graph: count what is declared
        notes.append(f"onnx shape inference failed ({first_line(error, 120)})")
    graph = fixed.graph
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in graph.initializer}
    types: dict[str, int] = {t.name: t.data_type for t in graph.initializer}
    for info in [*graph.value_info, *graph.input, *graph.output]:
        tensor_type = info.type.tensor_type
        types[info.name] = tensor_type.elem_type
        dims = [dim.dim_value for dim in tensor_type.shape.dim]
        if tensor_type.HasField("shape") and all(size > 0 for size in dims):
            shapes[info.name] = dims
    return shapes, types


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {
        attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute
    }


def _macs(nodes: Sequence[Any], shapes: Mapping[str, list[int]]) -> tuple[Counter[str], int]:
    """MACs by op type, and how many matrix products could not be counted."""
    counted: Counter[str] = Counter()
    unknown = 0
    for node in nodes:
        macs = _node_macs(node, shapes)
        if macs is None:
            unknown += node.op_type in (*CONVOLUTIONS, *MATMULS, *GEMMS, "ConvTranspose")
        else:
            counted[node.op_type] += macs
    return counted, unknown


def node_macs(path: Path, specs: Sequence[TensorSpec]) -> dict[str, int]:
    """MACs of each matrix product of the ONNX model at `path`, by node name."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes, _ = _inferred(model, specs, [])
    found = {node.name: _node_macs(node, shapes) for node in model.graph.node}
    return {name: macs for name, macs in found.items() if macs is not None}


def _node_macs(node: Any, shapes: Mapping[str, list[int]]) -> int | None:
    """A matrix product's MACs from its shapes; None for other ops or unknown shapes."""
    kind = node.op_type
    operands = [shapes.get(name) for name in node.input]
    output = shapes.get(node.output[0]) if node.output else None
    try:
        if kind in CONVOLUTIONS:
            weight = operands[CONVOLUTIONS[kind]]
            return convolution_macs(output, weight) if output and weight else None
        if kind == "ConvTranspose":
            first, weight = operands[0], operands[1]
            return transposed_convolution_macs(first, weight) if first and weight else None
        if kind in MATMULS or kind in GEMMS:
            first = operands[MATMULS.get(kind, 0)]
            transposed = kind in GEMMS and _attributes(node).get("transA", 0)
            if not first or not output:
                return None
            inner = first[0] if transposed or len(first) == 1 else first[-1]
            return matmul_macs(output, inner)
    except IndexError:
        return None
    return None


def _weights(graph: Any, folder: Path) -> tuple[dict[str, int], int]:
    """Weight elements by precision, and how many are zero.

    Quantization parameters (scales and zero points: inputs 1 and 2 of a Q/DQ node), scalars
    and integer index or shape constants are not weights; an int32 tensor a DequantizeLinear reads
    is (a quantized bias).
    """
    from onnx import numpy_helper

    parameters_of_quantizers = {
        name for node in graph.node if node.op_type in QDQ_OPS for name in node.input[1:]
    }
    dequantized = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    counts: Counter[str] = Counter()
    zeros = 0
    for tensor in graph.initializer:
        precision = PRECISION_OF.get(tensor.data_type)
        if precision is None or tensor.name in parameters_of_quantizers or not tensor.dims:
            continue  # scalars are constants of the computation (a scale, -10000), not weights
        if precision == "int32" and tensor.name not in dequantized:
            continue
        size = 1
        for dim in tensor.dims:
            size *= dim
        counts[precision] += size
        zeros += int(size - _nonzero(numpy_helper.to_array(tensor, base_dir=str(folder))))
    return dict(counts), zeros


def _nonzero(array: Any) -> int:
    import numpy as np

    return int(np.count_nonzero(array))


def _precision_mix(
    graph: Any, weights: dict[str, int], types: Mapping[str, int], constants: set[str]
) -> PrecisionMix:
    producers = {out: node for node in graph.node for out in node.output}
    activation_dq = {
        node.output[0]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] not in constants
    }
    weight_dq = {
        node.output[0]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in constants
    }
    compute: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        quantized = node.op_type in INTEGER_OPS or any(
            name in activation_dq or name in weight_dq for name in node.input[:2]
        )
        compute[
            "int8" if quantized else PRECISION_OF.get(types.get(node.input[0], 1), "other")
        ] += 1
    pairs = sum(
        1
        for node in graph.node
        if node.op_type == "DequantizeLinear"
        and (producers.get(node.input[0]) is not None)
        and producers[node.input[0]].op_type == "QuantizeLinear"
    )
    between = (
        _float_between_quantized(graph, activation_dq, constants | weight_dq, types)
        if pairs
        else []
    )
    return PrecisionMix(dict(weights), dict(compute), pairs, between)


def _float_between_quantized(
    graph: Any, activation_dq: set[str], constants: set[str], types: Mapping[str, int]
) -> list[dict[str, str]]:
    """Nodes computing in float with quantized tensors upstream and downstream of them.

    A node runs in INT8 when ONNX Runtime has a quantized kernel for its op (its
    `QLinearOpsRegistry`) and every activation it reads is dequantized; any other node with a
    dequantized tensor reaching it through float nodes, and a QuantizeLinear reachable from it
    the same way, is reported.
    """
    from onnxruntime.quantization.registry import QLinearOpsRegistry

    nodes = [n for n in graph.node if n.op_type not in (*QDQ_OPS, "Constant")]
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def activations(names: Sequence[str]) -> list[str]:
        return [n for n in names if n and n not in constants and types.get(n) in FLOAT_TYPES]

    def runs_int8(node: Any) -> bool:
        inputs = activations(node.input)
        return node.op_type in INTEGER_OPS or (
            node.op_type in QLinearOpsRegistry
            and bool(inputs)
            and all(name in activation_dq for name in inputs)
        )

    floating = {id(node) for node in nodes if not runs_int8(node) and activations(node.input)}
    producers = {out: node for node in nodes for out in node.output}
    upstream: dict[int, bool] = {}
    for node in nodes:  # graph order: producers first
        if id(node) in floating:
            upstream[id(node)] = any(
                name in activation_dq
                or (name in producers and upstream.get(id(producers[name]), False))
                for name in activations(node.input)
            )
    downstream: dict[int, bool] = {}
    for node in reversed(nodes):
        if id(node) in floating:
            downstream[id(node)] = any(
                consumer.op_type == "QuantizeLinear" or downstream.get(id(consumer), False)
                for name in node.output
                for consumer in consumers.get(name, [])
            )
    return [
        {"node": node.name, "op_type": node.op_type}
        for node in nodes
        if upstream.get(id(node)) and downstream.get(id(node))
    ]


def _tensor_info(info: Any) -> TensorInfo:
    tensor_type = info.type.tensor_type
    shape: list[int | str] | None = (
        [dim.dim_param or dim.dim_value for dim in tensor_type.shape.dim]
        if tensor_type.HasField("shape")
        else None
    )
    return TensorInfo(
        info.name, shape, DTYPE_OF.get(tensor_type.elem_type, str(tensor_type.elem_type))
    )


def _op_name(node: Any) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


def _scan_leaks(model: Any, leaks: LeakCollector) -> None:
    leaks.scan("model doc_string", model.doc_string)
    leaks.scan_all((f"model metadata {p.key}", p.value) for p in model.metadata_props)
    graph = model.graph
    leaks.scan("graph doc_string", graph.doc_string)
    leaks.scan_all(
        (f"graph metadata {p.key}", p.value) for p in getattr(graph, "metadata_props", [])
    )
    for node in graph.node:
        leaks.scan("node doc_string", node.doc_string)
        leaks.scan_all((f"node metadata {p.key}", p.value) for p in node.metadata_props)
    for function in model.functions:
        leaks.scan("function doc_string", function.doc_string)
        for node in function.node:
            leaks.scan_all(
                (f"function node metadata {p.key}", p.value) for p in node.metadata_props
            )
