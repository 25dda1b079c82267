"""Build deployment engines from a model: OpenVINO IR, TensorRT plans, torch-tensorrt programs.

Public entry point: `build_engine(source, output_dir, options)`. It resolves the source (an
ONNX file with its manifest, or a torch source with its input specs), then hands it to one
backend module: `build_openvino`, `build_tensorrt` (which also holds torch-tensorrt). Each
writes a new artifact with its manifest and never changes its input (artifact in, artifact out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError, DloptError
from dlopt.optimize.shape_profiles import parse_shape_ranges
from dlopt.optimize.tensorrt_plan import PRECISIONS
from dlopt.specs import TensorSpec

BUILD_BACKENDS = ("openvino", "tensorrt", "torch-tensorrt")
OPENVINO_HINTS = ("f32", "bf16", "f16")
# NNCF's own default subset size; the NOTES measurements used 100-300 samples.
DEFAULT_CALIBRATION_SIZE = 300
Progress = Callable[[str], None]


class BuildError(DloptError):
    """An engine cannot be built from this model with these options, or it diverges."""


@dataclass(frozen=True)
class BuildOptions:
    """How to build. Validated on creation (ConfigError names the field and the allowed values).

    - `compress_to_fp16` (OpenVINO): None means "by precision": FP16 IR weights for fp16, FP32
      weights otherwise (ov.save_model would compress everything to FP16 by default).
    - `static_shapes` (OpenVINO): reshape every input to its OPT shape.
    - `precision_hint` (OpenVINO): the INFERENCE_PRECISION_HINT recorded for compiling it.
    - `allow_tf32` (TensorRT): let FP32 engines use TF32 tensor cores.
    """

    backend: str
    precision: str = "fp32"
    calibration: str | None = None
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    shapes: tuple[str, ...] = ()
    static_shapes: bool = False
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    compress_to_fp16: bool | None = None
    precision_hint: str = "f32"
    allow_tf32: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.backend, BUILD_BACKENDS, "backend"),
            (self.precision, PRECISIONS, "precision"),
            (self.precision_hint, OPENVINO_HINTS, "OpenVINO precision hint"),
        ):
            if value not in allowed:
                raise ConfigError(f"unknown {what} {value!r}", f"use one of {', '.join(allowed)}")
        if self.calibration_size < 1:
            raise ConfigError(f"calibration size {self.calibration_size} must be at least 1")
        if self.workspace_mb is not None and self.workspace_mb < 1:
            raise ConfigError(f"--workspace {self.workspace_mb} MB must be at least 1")
        if self.backend == "openvino" and (self.workspace_mb or self.timing_cache):
            raise ConfigError(
                "--workspace and --timing-cache are TensorRT options", "drop them for openvino"
            )
        if self.compress_to_fp16 and self.precision == "fp32":
            raise ConfigError(
                "--compress-to-fp16 with --precision fp32 would store FP16 weights",
                "use --precision fp16 for FP16 weights",
            )
        parse_shape_ranges(self.shapes)  # raises InputSpecError on bad syntax

    def weights_fp16(self) -> bool:
        """Whether OpenVINO IR weights are stored as FP16 (the explicit save_model choice)."""
        if self.compress_to_fp16 is not None:
            return self.compress_to_fp16
        return self.precision == "fp16"


@dataclass
class BuildResult:
    """One built engine: where it is, what it is, and what the build checked and recorded."""

    backend: str
    precision: str
    path: Path
    manifest_path: Path
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildInput:
    """A resolved model source: an ONNX file, or a torch model in memory, with its specs."""

    kind: str  # onnx | torch
    text: str
    specs: list[TensorSpec]
    output_names: list[str] | None
    path: Path | None = None
    manifest: dict[str, Any] | None = None
    loaded: Any = None  # dlopt.sources.LoadedModel for torch sources


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
        from dlopt.optimize.build_tensorrt import require_tensorrt

        require_tensorrt(torch_tensorrt=options.backend == "torch-tensorrt")
    say(f"reading {source}")
    model = resolve_build_input(source, weights, input_specs, allow_pickle)
    if options.backend == "openvino":
        from dlopt.optimize.build_openvino import build_openvino_ir

        return build_openvino_ir(model, output_dir, options, say)
    if options.backend == "tensorrt":
        from dlopt.optimize.build_tensorrt import build_tensorrt_engine

        return build_tensorrt_engine(model, output_dir, options, say)
    from dlopt.optimize.build_tensorrt import build_torch_tensorrt

    return build_torch_tensorrt(model, output_dir, options, say)


def resolve_build_input(
    source: str,
    weights: Path | None = None,
    input_specs: Sequence[str] = (),
    allow_pickle: bool = False,
) -> BuildInput:
    """The source as an ONNX file or a loaded torch model, with input specs and output names.

    Input specs: `--input` when given, else the ONNX manifest's (or the graph's), else the
    model file's DLOPT_INPUTS. Raises SourceError, InputSpecError, BuildError.
    """
    from dlopt.sources import onnx_input_specs, parse_source
    from dlopt.specs import parse_input_specs

    ref = parse_source(source)
    if ref.kind == "onnx" and ref.path is not None:
        from dlopt.artifacts import read_manifest

        manifest = read_manifest(ref.path)
        if input_specs:
            specs = parse_input_specs(input_specs)
        elif manifest and manifest.get("inputs"):
            specs = [TensorSpec.from_dict(item) for item in manifest["inputs"]]
        else:
            specs = onnx_input_specs(ref.path)
        outputs = list(manifest.get("outputs", [])) if manifest else None
        return BuildInput("onnx", source, specs, outputs or None, ref.path, manifest)
    if ref.kind == "openvino_ir":
        raise BuildError(
            f"{source} is already an OpenVINO IR",
            "build from the ONNX file or the torch model it came from",
        )
    from dlopt.optimize.export import resolve_input_specs
    from dlopt.sources import load_torch_model
    from dlopt.specs import random_feed
    from dlopt.torch_io import output_names

    loaded = load_torch_model(source, weights, allow_pickle=allow_pickle)
    specs = resolve_input_specs(input_specs, loaded)
    names = output_names(loaded.module, random_feed(specs), specs)
    return BuildInput("torch", source, specs, names, ref.path, None, loaded)


def parent_record(model: BuildInput) -> dict[str, Any]:
    """The manifest's `parent` block: what the engine was built from."""
    record: dict[str, Any] = {"source": model.text, "kind": model.kind}
    if model.path is not None and model.path.is_file():
        from dlopt.artifacts import sha256_file

        record["path"] = str(model.path.resolve())  # written relative (dlopt.provenance)
        record["sha256"] = sha256_file(model.path)
    if model.manifest:
        record["precision"] = model.manifest.get("precision")
        record["recipe"] = model.manifest.get("recipe")
    return record
