"""A model's layers as `dlopt diff` sees them: the nodes in graph order with the float tensors
they read and write, whatever the format (ONNX, OpenVINO IR).

Quantization nodes are folded away so that an INT8 graph reads like its float parent:
- ONNX QDQ (`dlopt quantize`): X -> QuantizeLinear -> DequantizeLinear -> X_DequantizeLinear_Output.
  ONNX Runtime's quantizer keeps the float name `X` on the producer's output and names the
  dequantized copy after it (`onnxruntime.quantization.qdq_loss_debug` matches them the same
  way); consumers read the copy, so `X` counts as *quantized* and its consumers' view is the
  copy. Dequantized weights (a DequantizeLinear of an initializer) are constants.
- OpenVINO IR (NNCF): `X -> FakeQuantize -> consumers`; IR converted from ONNX keeps the ONNX
  tensor names on its ports, so `X` is found by name and the FakeQuantize output is its
  consumers' view. Weight paths (Constant -> Convert -> Multiply) are constants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLOAT_ONNX_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
FLOAT_OV_TYPES = frozenset({"f32", "f16", "bf16", "f64"})
QUANTIZE_INPUT_SUFFIX = "_QuantizeLinear_Input"  # onnxruntime.quantization.quant_utils
_IR_SKIPPED = frozenset({"Parameter", "Result", "Constant"})


@dataclass(frozen=True)
class Layer:
    """One node: its name, op type, the float activations it reads and the ones it writes."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass
class GraphView:
    """The layers of a model in graph order, and how its tensors can be read.

    `consumer_view[X]` is the tensor the consumers of X really read when X is quantized (a
    DequantizeLinear or FakeQuantize output); `aliases` maps every name of a tensor to the one
    used here (an IR port can carry several names).
    """

    format: str
    layers: list[Layer]
    graph_inputs: set[str]
    consumer_view: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    element_types: dict[str, Any] = field(default_factory=dict)

    def producers(self) -> dict[str, Layer]:
        return {tensor: layer for layer in self.layers for tensor in layer.outputs}

    def tensors(self) -> list[str]:
        """Float tensors written by the layers, in graph order."""
        return [tensor for layer in self.layers for tensor in layer.outputs]

    def resolve(self, names: Iterable[str]) -> str | None:
        """This graph's tensor for any of `names`, or None."""
        for name in names:
            if name in self.aliases:
                return self.aliases[name]
        return None

    def is_quantized(self, tensor: str) -> bool:
        return tensor in self.consumer_view


def onnx_graph_view(path: Path) -> GraphView:
    """The layers of an ONNX model; element types come from onnx shape inference."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # custom domains or a graph over 2 GB: use the types the file declares
        inferred = model
    graph = inferred.graph
    types = {
        info.name: info.type.tensor_type.elem_type
        for info in [*graph.value_info, *graph.output, *graph.input]
        if info.type.HasField("tensor_type")
    }
    constants = {tensor.name for tensor in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    quantize_inputs = {
        node.output[0]: node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"
    }
    # A DequantizeLinear output stands for the float tensor its QuantizeLinear read. Where the
    # float name is a graph output, the quantizer renames the producer's output
    # `X_QuantizeLinear_Input` and gives `X` to the DequantizeLinear (qdq_loss_debug's
    # QUANT_INPUT_SUFFIX case): the layer still writes X, quantized.
    standing_for: dict[str, str] = {}
    consumer_view: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = quantize_inputs.get(node.input[0])
        if node.input[0] in constants or source in constants:
            constants.add(node.output[0])  # a dequantized weight
        elif source is not None:
            if source == node.output[0] + QUANTIZE_INPUT_SUFFIX:
                renamed[source] = source = node.output[0]
            standing_for[node.output[0]] = source
            consumer_view.setdefault(source, node.output[0])
    layers: list[Layer] = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        inputs = tuple(
            standing_for.get(name, name)
            for name in node.input
            if name and name not in constants and types.get(name) in FLOAT_ONNX_TYPES
        )
        outputs = tuple(
            renamed.get(name, name) for name in node.output if types.get(name) in FLOAT_ONNX_TYPES
        )
        if outputs:
            layers.append(Layer(node.name or outputs[0], node.op_type, inputs, outputs))
    names = {tensor for layer in layers for tensor in layer.outputs}
    graph_inputs = {info.name for info in graph.input if info.name not in constants}
    return GraphView(
        format="onnx",
        layers=layers,
        graph_inputs=graph_inputs,
        consumer_view={
            key: value
            for key, value in consumer_view.items()
            if key in names or key in graph_inputs
        },
        aliases={name: name for name in names},
        element_types={name: types[name] for name in names if name in types},
    )


def ir_graph_view(ov_model: Any) -> GraphView:
    """The layers of an OpenVINO model (`openvino.Model`), in its topological order."""
    constant_ports: set[Any] = set()
    port_names: dict[Any, str] = {}
    aliases: dict[str, str] = {}
    consumer_view: dict[str, str] = {}
    element_types: dict[str, str] = {}
    layers: list[Layer] = []
    graph_inputs: set[str] = set()

    def key(port: Any) -> tuple[str, int]:
        return (port.get_node().get_friendly_name(), port.get_index())

    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        sources = [port.get_source_output() for port in op.inputs()]
        if kind == "Constant" or (
            kind not in _IR_SKIPPED and sources and all(key(s) in constant_ports for s in sources)
        ):
            constant_ports.update(key(port) for port in op.outputs())
            continue
        if kind == "Parameter":
            for port in op.outputs():
                name = canonical_name(port)
                port_names[key(port)] = name
                graph_inputs.add(name)
            continue
        if kind == "Result":
            continue
        reads = [port_names[key(s)] for s in sources if key(s) in port_names]
        if kind == "FakeQuantize" and reads:
            # Its consumers read the quantized copy of the float tensor it takes.
            port = op.output(0)
            port_names[key(port)] = reads[0]
            consumer_view.setdefault(reads[0], fake_quantized_name(reads[0]))
            continue
        outputs = []
        for port in op.outputs():
            if port.get_element_type().get_type_name() not in FLOAT_OV_TYPES:
                continue
            name = canonical_name(port)
            port_names[key(port)] = name
            for alias in port.get_names() or {name}:
                aliases.setdefault(alias, name)
            element_types[name] = port.get_element_type().get_type_name()
            outputs.append(name)
        if outputs:
            layers.append(Layer(op.get_friendly_name(), kind, tuple(reads), tuple(outputs)))
    return GraphView("openvino_ir", layers, graph_inputs, consumer_view, aliases, element_types)


def fake_quantized_name(tensor: str) -> str:
    """The name dlopt gives a FakeQuantize output of `tensor` when it exposes it."""
    return f"{tensor}/dlopt_fake_quantized"


def canonical_name(port: Any) -> str:
    names = sorted(port.get_names())
    if names:
        return str(names[0])
    return f"{port.get_node().get_friendly_name()}:{port.get_index()}"


def names_by_tensor(view: GraphView) -> dict[str, set[str]]:
    """Every name of each tensor of `view` (itself and its aliases)."""
    names: dict[str, set[str]] = {}
    for alias, tensor in view.aliases.items():
        names.setdefault(tensor, {tensor}).add(alias)
    return names
