"""Returning activations of a QDQ model to float without quantizing again: the accuracy
fallback of the static transformer recipe, where a second NNCF calibration would cost a minute
per step.

Removing an activation quantizer makes its consumers read the float tensor again; a matrix
product left with no quantized activation input also gets its weight back as a float
initializer (the dequantized INT8 values: per-channel INT8 weights lose little, and ONNX
Runtime would otherwise run the weight's DequantizeLinear on every call, as it does not fold
it). No library edits QDQ graphs this way (onnxruntime.quantization re-quantizes from the
float model), hence by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PRODUCT_OPS = frozenset({"MatMul", "Gemm", "Conv"})


def activation_dequantizers(model: Any) -> list[str]:
    """Names of the DequantizeLinear nodes that read an activation's QuantizeLinear."""
    graph = model.graph
    quantized = {node.output[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    initializers = {tensor.name for tensor in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "DequantizeLinear"
        and node.input[0] in quantized
        and node.input[0] not in initializers
    ]


def remove_activation_quantizers(
    source: Path,
    target: Path,
    dequantizers: Sequence[str],
    float_weights: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write `source` to `target` without the activation DequantizeLinear nodes named in
    `dequantizers` (and their QuantizeLinear once nothing reads it); see the module docstring.

    `float_weights`: the FP32 parent's weight of each MatMul by node name. A MatMul put back in
    float gets that weight (divided by the SmoothQuant scale NNCF multiplied its input by)
    instead of the dequantized INT8 one: SmoothQuant moves activation outliers into the
    weights, and their INT8 error alone kept the text sample at 25 dB SQNR."""
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    chosen = set(dequantizers)
    producers = {output: node for node in graph.node for output in node.output}
    touched: list[Any] = []
    renames: dict[str, str] = {}
    for node in list(graph.node):
        if node.name in chosen and node.op_type == "DequantizeLinear":
            quantize = producers[node.input[0]]
            renames[node.output[0]] = quantize.input[0]
            graph.node.remove(node)
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in renames:
                node.input[index] = renames[name]
                touched.append(node)
    for output in graph.output:
        if output.name in renames:  # a graph output keeps its name: leave that one quantized
            raise ValueError(f"{output.name} is a graph output")
    read = {name for node in graph.node for name in node.input}
    for node in list(graph.node):
        if node.op_type == "QuantizeLinear" and node.output[0] not in read:
            graph.node.remove(node)
    _float_weights(
        graph, [node for node in touched if node.op_type in PRODUCT_OPS], float_weights or {}
    )
    _drop_unused_initializers(graph)
    del graph.value_info[:]
    onnx.save(model, str(target))


def _float_weights(
    graph: Any, products: Sequence[Any], originals: Mapping[str, np.ndarray]
) -> None:
    """Give each product with no quantized activation input its weights as float initializers."""
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    for product in products:
        sources = [producers.get(name) for name in product.input]
        dequantized = [
            node for node in sources if node is not None and node.op_type == "DequantizeLinear"
        ]
        if any(node.input[0] not in initializers for node in dequantized):
            continue  # an activation input is still quantized: the product stays INT8
        for index, node in enumerate(sources):
            if node is None or node.op_type != "DequantizeLinear":
                continue
            weight = _original(product, index, originals, producers, initializers)
            if weight is None:
                weight = _dequantize(node, initializers)
            name = f"{product.name}_float_input{index}"
            graph.initializer.append(numpy_helper.from_array(weight, name))
            product.input[index] = name
    read = {name for node in graph.node for name in node.input}
    for node in list(graph.node):
        if node.op_type == "DequantizeLinear" and node.output[0] not in read:
            graph.node.remove(node)


def _original(
    product: Any,
    index: int,
    originals: Mapping[str, np.ndarray],
    producers: Mapping[str, Any],
    initializers: Mapping[str, Any],
) -> np.ndarray | None:
    """The parent's float weight of a MatMul (input 1), rescaled for a SmoothQuant Mul on its
    activation input; None when it does not match (then the dequantized weight is used)."""
    from onnx import numpy_helper

    weight = originals.get(product.name)
    if product.op_type != "MatMul" or index != 1 or weight is None or weight.ndim != 2:
        return None
    scale = np.ones(weight.shape[0], np.float32)
    smoothing = producers.get(product.input[0])
    if smoothing is not None and smoothing.op_type == "Mul":
        constant = next((initializers[n] for n in smoothing.input if n in initializers), None)
        if constant is not None:
            values = numpy_helper.to_array(constant).astype(np.float32).reshape(-1)
            if values.size not in (1, weight.shape[0]):
                return None
            scale = scale * values
    return np.asarray(weight / scale[:, None], dtype=np.float32)


def float_matmul_weights(model: Path) -> dict[str, np.ndarray]:
    """MatMul node name -> its constant float weight (input 1), from a float ONNX model."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model)).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    return {
        node.name: numpy_helper.to_array(initializers[node.input[1]])
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in initializers
    }


def _dequantize(node: Any, initializers: dict[str, Any]) -> np.ndarray:
    """(q - zero point) * scale of a DequantizeLinear of constants, per-axis where it is."""
    from onnx import helper, numpy_helper

    values = numpy_helper.to_array(initializers[node.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
    zero = (
        numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32)
        if len(node.input) > 2 and node.input[2]
        else np.zeros_like(scale)
    )
    if scale.ndim == 1 and scale.size > 1:
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return np.asarray((values - zero) * scale, dtype=np.float32)


def _drop_unused_initializers(graph: Any) -> None:
    read = {name for node in graph.node for name in node.input}
    outputs = {output.name for output in graph.output}
    for tensor in [t for t in graph.initializer if t.name not in read and t.name not in outputs]:
        graph.initializer.remove(tensor)
