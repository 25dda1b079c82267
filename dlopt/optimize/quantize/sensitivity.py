"""Which quantized nodes hurt the output most: the ranking the accuracy-aware mode of the ONNX
targets returns to float, most harmful first.

Static (QDQ): each activation's QuantizeLinear -> DequantizeLinear pair is bypassed in turn
(its consumers read the float tensor again, clipped to the quantized range) and the model's
first output is compared with the FP32 parent's: the pair whose removal helps most ranks
first, with the nodes on both sides of it (ORT quantizes a tensor for its producer and for its
consumers). This measures the effect on
the output directly. A per-tensor SQNR does not: on the transformer sample, the attention-mask
Add (scores plus -10000) looked fine by SQNR and was the node that cost 4% accuracy.
Dynamic (QOperator): by how badly dynamic INT8 represents each product's activation input, in
one pass (re-quantizing once per product cost minutes on MiniLM).
Static transformer recipe (NNCF): each activation quantizer bypassed in turn, as above.
Nothing here is in onnxruntime.quantization (its qdq_loss_debug compares tensors, not their
effect on the output), hence the hand-written graph edit.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlopt import progress
from dlopt.harness.drift import drift

Feeds = Sequence[Mapping[str, np.ndarray]]


def rank_qdq_nodes(
    quantized: Path, prepared_names: set[str], feeds: Feeds, reference: Sequence[np.ndarray]
) -> list[str]:
    """Node names of a QDQ model, the most harmful activation quantizers' nodes first.

    `prepared_names`: names of the float graph's nodes (only those can be excluded);
    `reference`: the FP32 parent's first output on each feed.
    """
    import onnx

    model = onnx.load(str(quantized))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}  # read as arrays only when needed
    producers = {out: node.name for node in graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)
    quantized_inputs = {
        n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"
    }
    scores: list[tuple[float, int, list[str]]] = []
    activations = sum(
        1
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and quantized_inputs.get(n.input[0]) not in (None, *initializers)
    )
    with (
        tempfile.TemporaryDirectory(prefix="dlopt-sensitivity-") as scratch,
        progress.step("ranking quantized nodes", activations) as advance,
    ):
        for index, node in enumerate(list(graph.node)):
            tensor = (
                quantized_inputs.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
            )
            if tensor is None or tensor in initializers:
                continue  # weights and biases are not activation quantizers
            output_sqnr = _with_bypass(model, node, tensor, initializers, scratch, feeds, reference)
            advance()
            nodes = [producers.get(tensor, ""), *consumers.get(node.output[0], [])]
            names = [name for name in nodes if name in prepared_names]
            scores.append((output_sqnr, index, names))
    ranking: list[str] = []
    for _, _, names in sorted(scores, key=lambda item: (-_sortable(item[0]), item[1])):
        ranking.extend(name for name in names if name not in ranking)
    return ranking


def rank_activation_quantizers(
    quantized: Path, feeds: Feeds, reference: Sequence[np.ndarray]
) -> list[str]:
    """Activation DequantizeLinear names of a QDQ model, the most harmful first (bypassing it
    helps the output most): the units `qdq_edit.remove_activation_quantizers` takes."""
    import onnx

    from dlopt.optimize.quantize.qdq_edit import activation_dequantizers

    model = onnx.load(str(quantized))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    quantized_inputs = {
        n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"
    }
    wanted = set(activation_dequantizers(model))
    nodes = [node for node in graph.node if node.name in wanted]
    scores: list[tuple[float, int, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="dlopt-sensitivity-") as scratch,
        progress.step("ranking activation quantizers", len(nodes)) as advance,
    ):
        for index, node in enumerate(nodes):
            tensor = quantized_inputs[node.input[0]]
            # No Clip: the fallback removes the quantizer with its range (NNCF's mean-of-
            # min/max ranges clip outliers, which ranking with the range kept did not see).
            sqnr = _with_bypass(
                model, node, tensor, initializers, scratch, feeds, reference, keep_range=False
            )
            scores.append((sqnr, index, node.name))
            advance()
    return [name for _, _, name in sorted(scores, key=lambda s: (-_sortable(s[0]), s[1]))]


def rank_by_input_quantization(model: Path, candidates: Sequence[str], feeds: Feeds) -> list[str]:
    """`candidates` (products of a float graph), worst first by how badly dynamic INT8
    computes them: one ORT pass with their inputs exposed as outputs, then in numpy each
    MatMul's output with its inputs quantized as ORT does it (activations as
    `DynamicQuantizeLinear`: uint8, range through 0, per call; weights int8 per column),
    against the float output; for other products, the input's own SQNR. Cheap: no
    re-quantization per node (~3 s each on MiniLM: 2-3 minutes for its 39 products). A local
    measure: `rank_by_quantizing_alone` then orders the likeliest by their output effect.
    Products without a float activation input (embedding lookups) rank last."""
    import onnx
    import onnxruntime as ort

    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    constants = {t.name: t for t in graph.initializer}
    inputs: dict[str, str] = {}
    weights: dict[str, np.ndarray] = {}  # MatMul node -> its constant weight
    for node in graph.node:
        if node.name in candidates and node.op_type != "Gather":
            tensor = next((name for name in node.input if name and name not in constants), None)
            if tensor is not None:
                inputs[node.name] = tensor
            if node.op_type == "MatMul" and node.input[1] in constants:
                weights[node.name] = onnx.numpy_helper.to_array(constants[node.input[1]])
    exposed = sorted(set(inputs.values()) - {output.name for output in graph.output})
    graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in exposed
    )
    del graph.value_info[:]
    names = [output.name for output in graph.output]
    signal: dict[str, float] = dict.fromkeys(inputs, 0.0)
    noise: dict[str, float] = dict.fromkeys(inputs, 0.0)
    rounded = {name: _per_column_int8(weight) for name, weight in weights.items()}
    with tempfile.TemporaryDirectory(prefix="dlopt-sensitivity-") as scratch:
        path = Path(scratch) / "exposed.onnx"
        onnx.save(graph_model, str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with progress.step("ranking products by input quantization", len(feeds)) as advance:
            for feed in feeds:
                values = dict(zip(names, session.run(names, dict(feed)), strict=True))
                for name, tensor in inputs.items():
                    x = np.asarray(values[tensor], dtype=np.float32)
                    exact, approximate = x, _dynamic_uint8(x)
                    if name in weights:  # the product's output, weights rounded too
                        exact, approximate = x @ weights[name], approximate @ rounded[name]
                    error = np.asarray(exact - approximate, np.float64).ravel()
                    flat = np.asarray(exact, np.float64).ravel()
                    signal[name] += float(np.einsum("i,i->", flat, flat))
                    noise[name] += float(np.einsum("i,i->", error, error))
                advance()

    def sqnr(name: str) -> float:
        if name not in inputs or noise[name] == 0:
            return math.inf
        return 10 * math.log10(signal[name] / noise[name])

    order = {name: index for index, name in enumerate(candidates)}
    ranked = sorted(candidates, key=lambda name: (sqnr(name), order[name]))
    return ranked


def rank_by_quantizing_alone(
    model: Path, shortlist: Sequence[str], feeds: Feeds, reference: Sequence[np.ndarray]
) -> list[str]:
    """`shortlist` (MatMuls with a constant weight) ordered by the output's SQNR when only
    that product is quantized as dynamic INT8 does it (a DynamicQuantizeLinear and
    DequantizeLinear on its input, its weight rounded per column), worst first: the effect on
    the output, which a local SQNR misses (the text sample's classifier head ranked ninth
    locally and mattered most)."""
    import onnx
    from onnx import helper, numpy_helper

    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    del graph.value_info[:]
    constants = {t.name: t for t in graph.initializer}
    nodes = {node.name: node for node in graph.node}
    scores: list[tuple[float, int, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="dlopt-sensitivity-") as scratch,
        progress.step("ranking products by their effect on the output", len(shortlist)) as advance,
    ):
        for index, name in enumerate(shortlist):
            node = nodes[name]
            weight = constants[node.input[1]]
            rounded = numpy_helper.from_array(
                _per_column_int8(numpy_helper.to_array(weight)), f"{name}_dlopt_rounded"
            )
            x = node.input[0]
            added = [
                helper.make_node(
                    "DynamicQuantizeLinear", [x], [f"{x}_q", f"{x}_s", f"{x}_z"], f"{name}_dq"
                ),
                helper.make_node(
                    "DequantizeLinear", [f"{x}_q", f"{x}_s", f"{x}_z"], [f"{x}_dlopt"], f"{name}_d"
                ),
            ]
            position = list(graph.node).index(node)
            for offset, extra in enumerate(added):
                graph.node.insert(position + offset, extra)
            graph.initializer.append(rounded)
            node.input[0], node.input[1] = f"{x}_dlopt", rounded.name
            try:
                path = Path(scratch) / "alone.onnx"
                onnx.save(graph_model, str(path))
                scores.append((_output_sqnr(path, feeds, reference), index, name))
            finally:
                node.input[0], node.input[1] = x, weight.name
                for extra in added:
                    graph.node.remove(extra)
                graph.initializer.pop()
            advance()
    return [name for _, _, name in sorted(scores, key=lambda s: (_sortable(s[0]), s[1]))]


def _per_column_int8(weight: np.ndarray) -> np.ndarray:
    """A [in, out] weight rounded as `quantize_dynamic(per_channel=True)` stores it (symmetric
    int8, one scale per output column)."""
    scale = np.abs(weight).max(axis=0, keepdims=True) / 127
    scale[scale == 0] = 1
    return np.asarray(np.clip(np.round(weight / scale), -127, 127) * scale, np.float32)


def _dynamic_uint8(x: np.ndarray) -> np.ndarray:
    """x quantized and dequantized as ORT's DynamicQuantizeLinear does (uint8, asymmetric,
    the range stretched to include 0)."""
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    zero = np.clip(np.round(-low / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _with_bypass(
    model: Any,
    dequantize: Any,
    tensor: str,
    initializers: Mapping[str, Any],
    scratch: str,
    feeds: Feeds,
    reference: Sequence[np.ndarray],
    keep_range: bool = True,
) -> float:
    """Output SQNR with one DequantizeLinear turned into a Clip of the float `tensor` to the
    quantized range: the rounding goes, the range stays. The range must stay for ORT's own
    QDQ graphs: ORT drops a Relu after a Conv or Gemm and lets the QDQ range (zero point at 0)
    do its clipping. `keep_range=False`: an Identity instead (the float tensor as it is)."""
    import onnx

    if not keep_range:
        return _with_identity(model, dequantize, tensor, scratch, feeds, reference)

    def array(name: str) -> np.ndarray | None:
        proto = initializers.get(name)
        return None if proto is None else onnx.numpy_helper.to_array(proto)

    scale = array(dequantize.input[1])
    zero_point = array(dequantize.input[2]) if len(dequantize.input) > 2 else None
    if scale is None or scale.size != 1 or (zero_point is not None and zero_point.size != 1):
        return math.nan  # per-channel or computed scales: not an activation quantizer
    info = np.iinfo(zero_point.dtype if zero_point is not None else np.uint8)
    offset = float(zero_point.item()) if zero_point is not None else 0.0
    low, high = (
        np.array((bound - offset) * float(scale.item()), np.float32)
        for bound in (info.min, info.max)
    )
    original = onnx.NodeProto()
    original.CopyFrom(dequantize)
    bounds = [
        onnx.numpy_helper.from_array(value, f"{dequantize.name}_dlopt_{kind}")
        for value, kind in ((low, "low"), (high, "high"))
    ]
    model.graph.initializer.extend(bounds)
    dequantize.op_type = "Clip"
    dequantize.domain = ""
    del dequantize.attribute[:]
    del dequantize.input[:]
    dequantize.input.extend([tensor, bounds[0].name, bounds[1].name])
    try:
        path = Path(scratch) / "bypass.onnx"
        onnx.save(model, str(path))
        return _output_sqnr(path, feeds, reference)
    finally:
        dequantize.CopyFrom(original)
        for _ in bounds:
            model.graph.initializer.pop()


def _with_identity(
    model: Any,
    dequantize: Any,
    tensor: str,
    scratch: str,
    feeds: Feeds,
    reference: Sequence[np.ndarray],
) -> float:
    """Output SQNR with one DequantizeLinear turned into an Identity of the float `tensor`."""
    import onnx

    original = onnx.NodeProto()
    original.CopyFrom(dequantize)
    dequantize.op_type = "Identity"
    dequantize.domain = ""
    del dequantize.attribute[:]
    del dequantize.input[:]
    dequantize.input.append(tensor)
    try:
        path = Path(scratch) / "bypass.onnx"
        onnx.save(model, str(path))
        return _output_sqnr(path, feeds, reference)
    finally:
        dequantize.CopyFrom(original)


def _output_sqnr(path: Path, feeds: Feeds, reference: Sequence[np.ndarray]) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # unused-initializer notes of the edited graphs
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    produced = [np.asarray(session.run(None, dict(feed))[0]) for feed in feeds]
    return drift(
        np.concatenate([p.ravel() for p in produced]),
        np.concatenate([np.asarray(r).ravel() for r in reference]),
    ).sqnr_db


def _sortable(value: float) -> float:
    return -math.inf if math.isnan(value) else value
