"""Nodes that compute integer indices from floats, which static INT8 must leave in float.

T5's relative position buckets are computed in float (Div, Log, Mul on position offsets), cast
to int64 and used as Gather indices. Fake-quantizing those floats (QDQ around Mul, Div, ...)
turns `log(0) = -inf`, masked away by a later Where in FP32, into garbage that the Cast makes
INT64_MIN: ORT then stops with "indices element out of data bounds, idx=-9223372036854775784".
Such values are indices, not activations: they stay float. Found by walking back from every
Cast to an integer type through the nodes that feed it, stopping at matrix products (whose
outputs are activations in any model).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 7, 12, 13})  # onnx.TensorProto: (U)INT8/16/32/64
STOP_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU"})


def index_computing_nodes(model: Path, stop_ops: Iterable[str] = STOP_OPS) -> list[str]:
    """Names of the nodes upstream of a Cast to an integer type (see the module docstring)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    producer = {output: node for node in graph.node for output in node.output}
    stops = frozenset(stop_ops)
    found: dict[str, None] = {}
    pending = [
        node
        for node in graph.node
        if node.op_type == "Cast"
        and any(a.name == "to" and a.i in INTEGER_TYPES for a in node.attribute)
    ]
    seen: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen or node.op_type in stops:
            continue
        seen.add(id(node))
        if node.name:
            found[node.name] = None
        pending.extend(producer[name] for name in node.input if name in producer)
    return list(found)
