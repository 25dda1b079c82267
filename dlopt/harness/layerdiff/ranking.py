"""Per-layer results in graph order, and where the error comes from.

A layer's own drift (cosine, SQNR against the reference) mixes the error it adds with the
error it inherits. `input_sqnr_db` is the SQNR of its worst input (inputs that were not matched
count with the SQNR of their nearest matched ancestors) and `noise_added` the growth of the
noise-to-signal power ratio from that input to its output (10^(-SQNR/10)): an embedding whose
INT8 table costs 40 dB adds 1e-4, a softmax that falls from 58 to 3 dB adds 0.5. Ranking by
the linear ratio rather than by dB lost keeps harmless drops from near-exact layers (100 -> 40
dB) below the ones that break the output. The layers that add the most are where the accuracy
goes. A softmax fed
by a quantized attention-mask Add is the typical case: the Add's output is within 60 dB of
FP32 over the whole tensor (the -10000 entries dominate it), the softmax's output is at 3 dB;
the softmax adds the error, and the quantizer on its input (the Add's output) is the cause,
so both are named: the layer and the producers of its quantized inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlopt.harness.drift import Drift
from dlopt.harness.layerdiff.graph import GraphView
from dlopt.harness.layerdiff.match import Match
from dlopt.jsonio import json_number

# SQNR above this is numerically identical for float32 (relative error 1e-5): capping it
# keeps "inf minus 120 dB" of two exact layers from looking like added error.
SQNR_CAP_DB = 100.0


@dataclass
class LayerResult:
    """One matched tensor: its layer, drift, the error it adds and what to keep in float."""

    index: int
    tensor: str
    layer: str
    op_type: str
    drift: Drift
    input_sqnr_db: float
    shape: list[int] | None = None
    quantized_inputs: list[dict[str, str]] = field(default_factory=list)
    keep_float: list[str] = field(default_factory=list)

    @property
    def noise_added(self) -> float:
        """Noise-to-signal power ratio of the output minus that of the worst input."""
        return _noise_ratio(_capped(self.drift.sqnr_db)) - _noise_ratio(self.input_sqnr_db)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tensor": self.tensor,
            "layer": self.layer,
            "op_type": self.op_type,
            "shape": self.shape,
            **{key: json_number(value) for key, value in self.drift.to_dict().items()},
            "input_sqnr_db": json_number(self.input_sqnr_db),
            "noise_added": json_number(self.noise_added),
            "quantized_inputs": self.quantized_inputs,
            "keep_float": self.keep_float,
        }


def layer_results(
    reference: GraphView,
    candidate: GraphView,
    matches: Sequence[Match],
    drifts: Mapping[str, Drift],
    shapes: Mapping[str, list[int]],
) -> list[LayerResult]:
    """A result per matched tensor with a measurement (in `drifts`), in graph order."""
    by_tensor = {match.tensor: match for match in matches}
    candidate_producers = candidate.producers()
    effective: dict[str, float] = {name: SQNR_CAP_DB for name in reference.graph_inputs}
    results: list[LayerResult] = []
    for layer in reference.layers:
        inputs = [effective.get(name, SQNR_CAP_DB) for name in layer.inputs]
        input_sqnr = min(inputs, default=SQNR_CAP_DB)
        for tensor in layer.outputs:
            measured = drifts.get(tensor)
            if measured is None:
                effective[tensor] = input_sqnr  # not seen: assume it adds nothing
                continue
            output_sqnr = _capped(measured.sqnr_db)
            effective[tensor] = output_sqnr
            quantized = [
                by_tensor[name]
                for name in layer.inputs
                if name in by_tensor and by_tensor[name].candidate_quantized
            ]
            quantized_inputs = [
                {
                    "tensor": match.tensor,
                    "layer": match.layer.name,
                    "op_type": match.layer.op_type,
                }
                for match in quantized
            ] + [
                {"tensor": name, "layer": name, "op_type": "model input"}
                for name in layer.inputs
                if name in reference.graph_inputs and candidate.is_quantized(name)
            ]
            keep_float = []
            for name in [
                *(m.candidate_tensor for m in quantized),
                by_tensor[tensor].candidate_tensor,
            ]:
                producer = candidate_producers.get(name)
                if producer is not None and producer.name not in keep_float:
                    keep_float.append(producer.name)
            results.append(
                LayerResult(
                    index=len(results),
                    tensor=tensor,
                    layer=layer.name,
                    op_type=layer.op_type,
                    drift=measured,
                    input_sqnr_db=input_sqnr,
                    shape=shapes.get(tensor),
                    quantized_inputs=quantized_inputs,
                    keep_float=keep_float,
                )
            )
    return results


def first_beyond(results: Sequence[LayerResult], min_cosine: float) -> LayerResult | None:
    """The first layer in graph order whose cosine is below `min_cosine` (or not a number)."""
    for result in results:
        if not result.drift.cosine >= min_cosine:  # NaN counts as beyond
            return result
    return None


def most_added(results: Sequence[LayerResult], top: int) -> list[LayerResult]:
    """The `top` layers that add the most error (only those that add some)."""
    adding = [r for r in results if r.noise_added > 0]
    return sorted(adding, key=lambda r: (-r.noise_added, r.index))[:top]


def _noise_ratio(sqnr_db: float) -> float:
    return float(10 ** (-sqnr_db / 10))


def _capped(sqnr_db: float) -> float:
    if math.isnan(sqnr_db):
        return -SQNR_CAP_DB  # non-finite outputs: as bad as it gets
    return min(sqnr_db, SQNR_CAP_DB)
