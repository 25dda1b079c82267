"""Match the layers of two models by tensor name, in the reference's graph order.

The names survive every step dlopt runs: ONNX Runtime's quantizer keeps the float tensor
names (and names each dequantized copy after its tensor), OpenVINO's ONNX frontend keeps ONNX
tensor names on the IR's ports, and the same file on two backends has the same names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from dlopt.harness.layerdiff.graph import GraphView, Layer, names_by_tensor


@dataclass(frozen=True)
class Match:
    """One tensor found in both models.

    `reference_output` / `candidate_output`: the name to read in each model's exposed
    outputs (the quantized copy where the model's consumers read one).
    """

    tensor: str
    layer: Layer
    candidate_tensor: str
    reference_output: str
    candidate_output: str
    candidate_quantized: bool


def match_layers(reference: GraphView, candidate: GraphView) -> list[Match]:
    """The reference's float tensors that the candidate also has, in graph order."""
    aliases = names_by_tensor(reference)
    matches: list[Match] = []
    for layer in reference.layers:
        for tensor in layer.outputs:
            found = candidate.resolve(sorted(aliases.get(tensor, {tensor})))
            if found is None:
                continue
            matches.append(
                Match(
                    tensor=tensor,
                    layer=layer,
                    candidate_tensor=found,
                    reference_output=reference.consumer_view.get(tensor, tensor),
                    candidate_output=candidate.consumer_view.get(found, found),
                    candidate_quantized=candidate.is_quantized(found),
                )
            )
    return matches


def coverage_by_op_type(reference: GraphView, matches: list[Match]) -> dict[str, list[int]]:
    """`{op_type: [layers matched, layers]}` of the reference, e.g. `{"Conv": [15, 15]}`."""
    matched_layers = {match.layer.name for match in matches}
    totals = Counter(layer.op_type for layer in reference.layers)
    found = Counter(layer.op_type for layer in reference.layers if layer.name in matched_layers)
    return {op_type: [found[op_type], total] for op_type, total in sorted(totals.items())}
