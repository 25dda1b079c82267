"""Build deployment engines from a model: OpenVINO IR, TensorRT plans, torch-tensorrt programs.

Public entry point: `build_engine(source, output_dir, options)`. It resolves the source (an
ONNX file with its manifest, or a torch source with its input specs), then hands it to one
module: `openvino.py`, `tensorrt.py` or `torch_tensorrt.py`. Each
writes a new artifact with its manifest and never changes its input (artifact in, artifact out).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlopt.optimize.build.options import BuildError, BuildOptions, BuildResult, Progress
from dlopt.optimize.model_input import resolve_model_input

__all__ = ["BuildError", "BuildOptions", "BuildResult", "build_engine"]


def build_engine(
    source: str,
    output_dir: Path,
    options: BuildOptions,
    weights: Path | None = None,
    input_specs: Sequence[str] = (),
    allow_pickle: bool = False,
    progress: Progress | None = None,
) -> BuildResult:
    """Build `source` into an engine for `options.backend` in `output_dir`.

    ONNX sources build for openvino and tensorrt; torch sources (model.py:factory,
    TorchScript, ExportedProgram) for openvino (through openvino.convert_model) and
    torch-tensorrt. Raises DloptError subclasses: BuildError, ConfigError, BackendError (the
    runtime is missing here: TensorRT without a GPU), InputSpecError, DataError.
    """
    say = progress or (lambda message: None)
    if options.backend in ("tensorrt", "torch-tensorrt"):
        # Before loading anything: say at once what is missing on this machine.
        from dlopt.optimize.build.tensorrt import require_tensorrt

        require_tensorrt(torch_tensorrt=options.backend == "torch-tensorrt")
    say(f"reading {source}")
    model = resolve_model_input(source, weights, input_specs, allow_pickle)
    if options.backend == "openvino":
        from dlopt.optimize.build.openvino import build_openvino_ir

        return build_openvino_ir(model, output_dir, options, say)
    if options.backend == "tensorrt":
        from dlopt.optimize.build.tensorrt import build_tensorrt_engine

        return build_tensorrt_engine(model, output_dir, options, say)
    from dlopt.optimize.build.torch_tensorrt import build_torch_tensorrt

    return build_torch_tensorrt(model, output_dir, options, say)
