"""TensorRT engines from ONNX (the TensorRT Python API).

Strongly typed builds (see `dlopt.backends.tensorrt.plan`): FP32 from an FP32 ONNX (TF32 cleared), FP16 from
an ONNX converted to FP16 first (ModelOpt AutoCast where installed, else onnxconverter-common;
I/O kept float32), INT8 from an explicit Q/DQ ONNX. One optimization profile covers the input
ranges; a timing cache file is read before and written after the build; the builder's log is
captured to `builder.log`. The manifest records the TensorRT version and the GPU, which the
tensorrt backend checks before it loads the engine.

Every TensorRT and CUDA import happens inside a function: on a machine without
them, `require_tensorrt` raises a BackendError that says exactly what is missing.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dlopt.artifacts import Manifest, atomic_output, staging_dir, write_manifest
from dlopt.errors import BackendError, ConfigError
from dlopt.backends.tensorrt import INSTALL_HINT
from dlopt.backends.tensorrt.plan import (
    TensorRTPlan,
    detect_onnx_precision,
    network_creation_flags,
    plan_tensorrt_build,
    workspace_bytes,
)
from dlopt.optimize.build.options import BuildError, BuildOptions, BuildResult, Progress
from dlopt.optimize.build.shape_profiles import ShapeRange, parse_shape_ranges, resolve_shape_ranges
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
    """`fp32`, `fp16` or `int8` (Q/DQ) for an ONNX file, by its ops and initializer types."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    for function in model.functions:
        ops.update(node.op_type for node in function.node)
    names = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.FLOAT16: "float16"}
    types = {names[t.data_type] for t in model.graph.initializer if t.data_type in names}
    return detect_onnx_precision(ops, types)


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
        engine_bytes, log_lines = _build_serialized(onnx_path, plan, ranges, options)
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


def _build_serialized(
    onnx_path: Path,
    plan: TensorRTPlan,
    ranges: Mapping[str, ShapeRange],
    options: BuildOptions,
) -> tuple[bytes, list[str]]:
    import tensorrt as trt

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.lines.append(f"[{str(severity).rsplit('.', 1)[-1]}] {msg}")

    logger = CapturingLogger()
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(
            f"TensorRT's ONNX parser rejects {onnx_path.name}: {'; '.join(errors)[:400]}",
            "check the opset and ops against TensorRT's supported ONNX operators",
        )
    config = builder.create_builder_config()
    size = workspace_bytes(options.workspace_mb)
    if size is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    for name in plan.set_builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.clear_builder_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shape_range = ranges.get(tensor.name)
        if shape_range is None:
            raise BuildError(f"the ONNX input {tensor.name!r} has no input spec")
        profile.set_shape(tensor.name, shape_range.min, shape_range.opt, shape_range.max)
    config.add_optimization_profile(profile)
    cache_path = options.timing_cache
    cache_data = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_data)
    config.set_timing_cache(cache, False)  # ignore_mismatch: refuse a cache from another GPU
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = [line for line in logger.lines if line.startswith(("[ERROR]", "[INTERNAL"))]
        raise BuildError(
            f"TensorRT could not build an engine from {onnx_path.name}: "
            f"{(errors or logger.lines or ['no log'])[-1][:400]}",
            "see builder.log; try a larger --workspace or narrower --shapes",
        )
    if cache_path is not None:
        with atomic_output(cache_path) as temporary:
            temporary.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), logger.lines
