"""What `dlopt inspect` reports about one model, and the side-by-side view of two."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Element types as the precision mix names them.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4", "int32", "fp64", "other")


@dataclass
class TensorInfo:
    """A model input or output: its name, shape (sizes, or axis names where dynamic), dtype."""

    name: str
    shape: list[int | str] | None
    dtype: str


@dataclass
class PrecisionMix:
    """How much of the model runs or is stored at each precision.

    `weights`: weight elements by storage type; `compute_ops`: matrix products (convolutions,
    MatMul, Gemm...) by the precision they compute in; `quantize_pairs`: activation
    quantizers (ONNX QuantizeLinear->DequantizeLinear pairs, OpenVINO FakeQuantize ops);
    `float_between_quantized`: nodes that compute in float while quantized tensors flow in and
    out of them (each costs a dequantize and a quantize).
    """

    weights: dict[str, int] = field(default_factory=dict)
    compute_ops: dict[str, int] = field(default_factory=dict)
    quantize_pairs: int = 0
    float_between_quantized: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ModelSummary:
    """One model, as `dlopt inspect` prints it (see `to_dict` for the JSON)."""

    model: str
    format: str
    size_bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameters: int
    macs: int | None
    macs_by_op_type: dict[str, int]
    op_histogram: dict[str, int]
    precision: PrecisionMix
    zero_weights: int
    macs_at: dict[str, list[int]] = field(default_factory=dict)  # input shapes MACs are for
    producer: str | None = None
    opset: dict[str, int] = field(default_factory=dict)
    leaks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def flops(self) -> int | None:
        """Two floating-point operations (a multiply and an add) per MAC."""
        return None if self.macs is None else 2 * self.macs

    @property
    def sparsity(self) -> float:
        """Share of weight elements that are exactly zero."""
        return self.zero_weights / self.parameters if self.parameters else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flops"] = self.flops
        data["sparsity"] = round(self.sparsity, 6)
        return data


def side_by_side(first: ModelSummary, second: ModelSummary) -> list[dict[str, Any]]:
    """The figures that differ between two models: `{"what", "first", "second", "change"}`.

    `change` is second/first for sizes and counts (None where the first is 0), absent for
    text.
    """
    rows: list[dict[str, Any]] = []

    def add(what: str, a: Any, b: Any, ratio: bool = True) -> None:
        if a == b:
            return
        row: dict[str, Any] = {"what": what, "first": a, "second": b}
        if ratio and isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
            row["change"] = b / a
        rows.append(row)

    add("format", first.format, second.format, ratio=False)
    add("size on disk (bytes)", first.size_bytes, second.size_bytes)
    add("parameters", first.parameters, second.parameters)
    add("MACs", first.macs, second.macs)
    for op_type in sorted(set(first.macs_by_op_type) | set(second.macs_by_op_type)):
        add(
            f"MACs in {op_type}",
            first.macs_by_op_type.get(op_type, 0),
            second.macs_by_op_type.get(op_type, 0),
        )
    for kind in PRECISIONS:
        add(
            f"weights in {kind}",
            first.precision.weights.get(kind, 0),
            second.precision.weights.get(kind, 0),
        )
        add(
            f"compute ops in {kind}",
            first.precision.compute_ops.get(kind, 0),
            second.precision.compute_ops.get(kind, 0),
        )
    add("quantize pairs", first.precision.quantize_pairs, second.precision.quantize_pairs)
    add(
        "ops in float between quantized ones",
        len(first.precision.float_between_quantized),
        len(second.precision.float_between_quantized),
    )
    add("nodes", sum(first.op_histogram.values()), sum(second.op_histogram.values()))
    add("sparsity", round(first.sparsity, 4), round(second.sparsity, 4), ratio=False)
    add("inputs", _signature(first.inputs), _signature(second.inputs), ratio=False)
    add("outputs", _signature(first.outputs), _signature(second.outputs), ratio=False)
    add("opset", _opsets(first.opset), _opsets(second.opset), ratio=False)
    add("producer", first.producer, second.producer, ratio=False)
    add("metadata that leaks paths or source", len(first.leaks), len(second.leaks))
    return rows


def _opsets(opset: dict[str, int]) -> str:
    return ", ".join(f"{domain} {version}" for domain, version in opset.items())


def _signature(tensors: list[TensorInfo]) -> str:
    return ", ".join(f"{t.name}:{'x'.join(map(str, t.shape or []))}:{t.dtype}" for t in tensors)
