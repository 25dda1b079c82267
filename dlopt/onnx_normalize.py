"""ONNX files as model zoos ship them, brought to the form the quantizers expect.

Files from older exporters and converters (ONNX Model Zoo's ResNet, SqueezeNet, Inception)
use old opsets (7-11) and often declare every initializer as a graph input too (IR version 3
required it). ONNX Runtime then treats the weights as overridable inputs, does not fold them,
and its quantizers fail on them ("Required inputs (['..._SHAPE', ...])", an int32 bias
DequantizeLinear the graph rejects). `normalize_onnx` removes initializers from the graph
inputs and converts opsets below MIN_OPSET with onnx's own version converter; a file that needs
neither is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dlopt.errors import SourceError, first_line

# Per-channel QDQ (QuantizeLinear/DequantizeLinear with an axis) needs opset 13.
MIN_OPSET = 13
TARGET_OPSET = 17


@dataclass(frozen=True)
class Normalized:
    """The file to use and what was changed to get it (empty: the original, untouched)."""

    path: Path
    changes: list[str] = field(default_factory=list)


def normalize_onnx(path: Path, output: Path) -> Normalized:
    """`path` itself when it needs nothing, else a normalized copy written to `output`.

    Raises SourceError when the version converter cannot convert the graph.
    """
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path), load_external_data=False)
    opset = _default_opset(model)
    initializers = {initializer.name for initializer in model.graph.initializer}
    declared = [value for value in model.graph.input if value.name in initializers]
    if not declared and opset >= MIN_OPSET:
        return Normalized(path)
    model = onnx.load(str(path))  # with external data: it is rewritten whole
    changes = []
    if declared:
        kept = [value for value in model.graph.input if value.name not in initializers]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        changes.append(f"{len(declared)} initializers removed from the graph inputs")
    if opset < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
        except Exception as error:
            raise SourceError(
                f"{path} uses opset {opset}, and onnx's version converter cannot bring it to "
                f"{TARGET_OPSET}: {first_line(error, 160)}",
                f"re-export the model with opset {MIN_OPSET} or newer",
            ) from error
        changes.append(f"opset {opset} converted to {TARGET_OPSET}")
    if model.ir_version < 7:
        model.ir_version = 7  # what opset 13+ needs; older IR versions carry no new fields
    onnx.save(model, str(output))
    return Normalized(output, changes)


def _default_opset(model: object) -> int:
    for entry in getattr(model, "opset_import", []):
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1
