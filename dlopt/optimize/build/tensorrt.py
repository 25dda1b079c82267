"""TensorRT engines from ONNX (the TensorRT Python API).

Strongly typed builds (see `dlopt.backends.tensorrt.plan`): FP32 from an FP32 ONNX (TF32
cleared), FP16 from an ONNX converted to FP16 first (ModelOpt AutoCast where installed, else
onnxconverter-common; I/O kept float32), INT8 from an explicit Q/DQ ONNX. One optimization
profile covers the input ranges; a timing cache file is read before and written after the
build; the builder's log is captured to `builder.log`. The TensorRT calls themselves live with
the backend (`dlopt.backends.tensorrt.builder`), which also builds engines from ONNX files it
is given to run. The manifest records the TensorRT version and the GPU, which the
tensorrt backend checks before it loads the engine.

Every TensorRT and CUDA import happens inside a function: on a machine without
them, `require_tensorrt` raises a BackendError that says exactly what is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dlopt.artifacts import Manifest, atomic_output, staging_dir, write_manifest
from dlopt.backends.tensorrt import INSTALL_HINT
from dlopt.backends.tensorrt.builder import build_serialized_engine, inspect_onnx
from dlopt.backends.tensorrt.plan import (
    network_creation_flags,
    plan_tensorrt_build,
    workspace_bytes,
)
from dlopt.errors import BackendError, ConfigError
from dlopt.optimize.build.options import BuildOptions, BuildResult, Progress
from dlopt.optimize.build.shape_profiles import parse_shape_ranges, resolve_shape_ranges
from dlopt.optimize.model_input import ModelInput, parent_record
from dlopt.optimize.quantize.fp16 import convert_onnx_to_fp16

ENGINE_FILE = "model.plan"
BUILDER_LOG = "builder.log"


def require_tensorrt(torch_tensorrt: bool = False) -> str:
    """The TensorRT version, once a GPU, TensorRT (and torch-tensorrt when asked) are usable.

    Raises BackendError (exit 2) naming everything that is missing: no NVIDIA GPU, TensorRT
    not installed or not loadable, a version older than dlopt supports.
    """
    from dlopt.backends.tensorrt.backend import TensorRTBackend

    availability = TensorRTBackend().availability()
    if not availability.ok:
        raise BackendError(
            f"cannot build TensorRT engines here: {availability.reason}",
            f"{INSTALL_HINT}; on this machine use --backend openvino",
        )
    try:
        import tensorrt as trt
    except Exception as error:  # the wheel is there but its libraries are not
        raise BackendError(
            f"TensorRT is installed but does not load: {type(error).__name__}: {error}",
            "reinstall it with pip install 'dlopt[tensorrt]' (libnvinfer must match the wheel)",
        ) from error
    version = str(trt.__version__)
    network_creation_flags(version)  # raises for versions older than 10.12
    if torch_tensorrt and importlib.util.find_spec("torch_tensorrt") is None:
        raise BackendError(
            "torch-tensorrt is not installed", f"{INSTALL_HINT} (it pins torch's minor version)"
        )
    return version


def installed_fp16_converters() -> list[str]:
    """The FP16 ONNX converters importable here, best first."""
    found = []
    if importlib.util.find_spec("modelopt") is not None:
        found.append("modelopt-autocast")
    if importlib.util.find_spec("onnxconverter_common") is not None:
        found.append("onnxconverter-common")
    return found


def onnx_precision(path: Path) -> str:
    """`fp32`, `fp16` or `int8` (Q/DQ) for an ONNX file, by its ops and initializer types;
    ConfigError for Q/DQ TensorRT cannot build (the backend's own check)."""
    return inspect_onnx(path).precision


def build_tensorrt_engine(
    model: ModelInput, output_dir: Path, options: BuildOptions, say: Progress
) -> BuildResult:
    """Build and save a serialized engine from an ONNX source; see the module docstring."""
    if model.kind != "onnx" or model.path is None:
        raise ConfigError(
            f"--backend tensorrt builds from ONNX and {model.text} is a torch model",
            "export it first (dlopt export -f onnx), or use --backend torch-tensorrt",
        )
    version = require_tensorrt()
    plan = plan_tensorrt_build(
        options.precision,
        onnx_precision(model.path),
        version,
        installed_fp16_converters(),
        options.allow_tf32,
    )
    ranges = resolve_shape_ranges(model.specs, parse_shape_ranges(options.shapes))
    from dlopt.backends.tensorrt.cuda import gpu_environment

    environment = gpu_environment()
    final_path = output_dir / ENGINE_FILE
    with staging_dir(output_dir) as staging:
        onnx_path = model.path
        if plan.convert_to_fp16_with:
            say(f"converting the ONNX to FP16 with {plan.convert_to_fp16_with}")
            onnx_path = staging / "model.fp16.onnx"
            convert_onnx_to_fp16(model.path, onnx_path, plan.convert_to_fp16_with)
        say("building the TensorRT engine (minutes for large models)")
        engine_bytes, log_lines = build_serialized_engine(
            onnx_path,
            plan,
            {name: (r.min, r.opt, r.max) for name, r in ranges.items()},
            workspace_bytes(options.workspace_mb),
            options.timing_cache,
        )
        (output_dir / BUILDER_LOG).write_text("\n".join(log_lines) + "\n")
        with atomic_output(final_path) as temporary:
            temporary.write_bytes(engine_bytes)
    manifest = Manifest(
        format="tensorrt_plan",
        file=final_path.name,
        precision=options.precision,
        inputs=[spec.to_dict() for spec in model.specs],
        outputs=list(model.output_names or []),
        source=dict(model.manifest.get("source", {})) if model.manifest else {"ref": model.text},
        parent=parent_record(model),
        recipe={
            "step": "build",
            "backend": "tensorrt",
            "plan": plan.to_dict(),
            "profile": {name: r.to_dict() for name, r in ranges.items()},
            "workspace_mb": options.workspace_mb,
            "timing_cache": str(options.timing_cache) if options.timing_cache else None,
            "builder_log": BUILDER_LOG,
            # The backend reads this block to refuse engines from another TensorRT or GPU.
            "tensorrt": {**environment.to_dict(), "version_compatible": False},
        },
    )
    manifest.tool_versions["tensorrt"] = version
    manifest_path = write_manifest(final_path, manifest)
    return BuildResult(
        "tensorrt",
        options.precision,
        final_path,
        manifest_path,
        {"tensorrt_version": version, "gpu": environment.gpu_name, "plan": plan.to_dict()},
    )
