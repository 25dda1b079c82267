"""torch-tensorrt programs: a torch source compiled by torch-tensorrt (dynamo) and saved as an
ExportedProgram. Every torch-tensorrt, TensorRT and CUDA import happens inside a function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlopt.artifacts import Manifest, atomic_output, write_manifest
from dlopt.backends.tensorrt.plan import workspace_bytes
from dlopt.errors import ConfigError
from dlopt.optimize.build.options import BuildOptions, BuildResult, Progress
from dlopt.optimize.build.shape_profiles import parse_shape_ranges, resolve_shape_ranges
from dlopt.optimize.build.tensorrt import require_tensorrt
from dlopt.optimize.model_input import ModelInput, parent_record


def build_torch_tensorrt(
    model: ModelInput, output_dir: Path, options: BuildOptions, say: Progress
) -> BuildResult:
    """Compile a torch source with torch-tensorrt (dynamo) and save it as an ExportedProgram."""
    if model.kind != "torch":
        raise ConfigError(
            f"--backend torch-tensorrt compiles torch models and {model.text} is ONNX",
            "use --backend tensorrt for ONNX files",
        )
    if options.precision == "int8":
        raise ConfigError(
            "torch-tensorrt INT8 needs a module quantized with NVIDIA ModelOpt",
            "use --backend tensorrt with a Q/DQ ONNX from dlopt quantize --target tensorrt",
        )
    version = require_tensorrt(torch_tensorrt=True)
    import torch
    import torch_tensorrt

    from dlopt.backends.tensorrt.cuda import gpu_environment
    from dlopt.torch_io import FlatIOModule

    ranges = resolve_shape_ranges(model.specs, parse_shape_ranges(options.shapes))
    module: Any = FlatIOModule(model.loaded.module, [spec.name for spec in model.specs])
    if options.precision == "fp16":
        module = _half_inside(module.half())
    module = module.eval().cuda()
    dtypes = {"float32": torch.float32, "float16": torch.float32, "int64": torch.int64}
    inputs = [
        torch_tensorrt.Input(
            min_shape=ranges[spec.name].min,
            opt_shape=ranges[spec.name].opt,
            max_shape=ranges[spec.name].max,
            dtype=dtypes.get(spec.dtype, torch.int32),
        )
        for spec in model.specs
    ]
    say("compiling with torch-tensorrt")
    compiled = torch_tensorrt.compile(
        module,
        ir="dynamo",
        arg_inputs=inputs,
        use_explicit_typing=True,
        disable_tf32=not options.allow_tf32,
        workspace_size=workspace_bytes(options.workspace_mb) or 0,
    )
    final_path = output_dir / "model.ep"
    examples = [
        torch.zeros(ranges[spec.name].opt, dtype=dtypes.get(spec.dtype, torch.int32)).cuda()
        for spec in model.specs
    ]
    with atomic_output(final_path) as temporary:
        torch_tensorrt.save(compiled, str(temporary), arg_inputs=examples)
    environment = gpu_environment()
    manifest = Manifest(
        format="torch_tensorrt",
        file=final_path.name,
        precision=options.precision,
        inputs=[spec.to_dict() for spec in model.specs],
        outputs=list(model.output_names or []),
        parent=parent_record(model),
        recipe={
            "step": "build",
            "backend": "torch-tensorrt",
            "torch_tensorrt_version": torch_tensorrt.__version__,
            "profile": {name: r.to_dict() for name, r in ranges.items()},
            "tensorrt": {**environment.to_dict(), "version_compatible": False},
        },
    )
    manifest.tool_versions["tensorrt"] = version
    return BuildResult(
        "torch-tensorrt",
        options.precision,
        final_path,
        write_manifest(final_path, manifest),
        {"tensorrt_version": version, "gpu": environment.gpu_name},
    )


def _half_inside(module: Any) -> Any:
    """FP16 weights and compute, float32 inputs and outputs (as keep_io_types for ONNX)."""
    import torch

    class HalfInside(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            cast = [t.half() if t.is_floating_point() else t for t in inputs]
            return tuple(t.float() if t.is_floating_point() else t for t in self.inner(*cast))

    return HalfInside(module)
