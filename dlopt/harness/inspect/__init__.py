"""`dlopt inspect`: what a model is made of, without running it on data.

One module per format (`onnx_model.py`, `openvino_model.py`, `torch_model.py`), each using the
library that already reads and counts that format; `summary.py` holds the result and the
side-by-side view of two models, `macs.py` the few MAC formulas no library offers for ONNX or
IR, `leaks.py` the search for paths and source code in metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlopt.harness.inspect.summary import ModelSummary, side_by_side

__all__ = ["ModelSummary", "inspect_model", "side_by_side"]


def inspect_model(
    source: str,
    weights: Path | None = None,
    input_specs: Sequence[str] = (),
    trust_pickle: bool = False,
) -> ModelSummary:
    """Summarize `source` (ONNX, OpenVINO IR, TorchScript, .pt2, or `file.py:factory` with
    `weights`); MACs at the input specs' example shapes (`input_specs`, else the manifest's or
    the model file's). Raises SourceError, WeightsError, InputSpecError."""
    from dlopt.backends.base import describe_artifact
    from dlopt.specs import parse_input_specs

    info = describe_artifact(source)
    if info.format in ("onnx", "openvino_ir") and info.path is not None:
        specs = parse_input_specs(input_specs) if input_specs else list(info.inputs or [])
        if info.format == "onnx":
            from dlopt.harness.inspect.onnx_model import inspect_onnx

            return inspect_onnx(info.path, specs)
        from dlopt.harness.inspect.openvino_model import inspect_ir

        return inspect_ir(info.path, specs)
    from dlopt.harness.inspect.torch_model import inspect_torch

    return inspect_torch(source, weights, input_specs, trust_pickle, info.inputs or [])
