"""What to build for TensorRT, and whether an engine may run here: pure logic, CPU-testable.

TensorRT 11 has no weak typing (no BuilderFlag.FP16/INT8, no calibrators): precision lives in
the ONNX graph. So an FP16 engine is built from an FP16 ONNX (converted first, I/O kept
float32), an INT8 engine from an explicit Q/DQ ONNX (`dlopt quantize --target tensorrt`).
Supported: TensorRT 10.12 and later 10.x (networks created STRONGLY_TYPED, the same behaviour)
and 11.x (always strongly typed; the flag is accepted and ignored, so it is not set).
Nothing here imports tensorrt, onnx or a CUDA library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlopt.errors import BackendError, ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
MIN_TENSORRT_VERSION = (10, 12)
STRONG_TYPING_BUILTIN_VERSION = (11, 0)
FP16_CONVERTERS = ("modelopt-autocast", "onnxconverter-common")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
ORT_PROVIDER_CHOICES = ("auto", "tensorrt", "cuda", "cpu")
ORT_PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
INSTALL_HINT = "pip install 'dlopt[tensorrt]' on a machine with an NVIDIA GPU and CUDA"


def parse_version(text: str) -> tuple[int, ...]:
    """`10.13.0.35` -> (10, 13, 0, 35); raises BackendError for text without a version."""
    numbers = re.findall(r"\d+", text.split("+")[0])
    if not numbers:
        raise BackendError(f"cannot read a TensorRT version from {text!r}")
    return tuple(int(n) for n in numbers)


def network_creation_flags(tensorrt_version: str) -> list[str]:
    """The NetworkDefinitionCreationFlag names to set for strongly typed networks.

    10.12 <= version < 11: ["STRONGLY_TYPED"] (opt in); 11.x and later: [] (always strongly
    typed). Older versions are refused: their FP16/INT8 paths need the weak typing we do not use.
    """
    version = parse_version(tensorrt_version)[:2]
    if version < MIN_TENSORRT_VERSION:
        raise BackendError(
            f"TensorRT {tensorrt_version} is too old for dlopt (strongly typed builds need "
            f"{'.'.join(map(str, MIN_TENSORRT_VERSION))} or later)",
            "upgrade: pip install -U 'dlopt[tensorrt]'",
        )
    return [] if version >= STRONG_TYPING_BUILTIN_VERSION else ["STRONGLY_TYPED"]


def detect_onnx_precision(op_types: Iterable[str], float_types: Iterable[str]) -> str:
    """The precision an ONNX graph carries: `int8` if it has Q/DQ nodes, `fp16` if any float
    initializer is float16 (a converted graph keeps a few float32 ones), else `fp32`.

    `float_types` are the element types of the graph's float initializers ("float",
    "float16", "bfloat16").
    """
    if QDQ_OPS & set(op_types):
        return "int8"
    types = set(float_types)
    if "float16" in types:
        return "fp16"
    return "fp32"


@dataclass(frozen=True)
class TensorRTPlan:
    """What `build_tensorrt_engine` does: convert the ONNX first or not, and which flags."""

    precision: str
    convert_to_fp16_with: str | None = None
    set_builder_flags: tuple[str, ...] = ()
    clear_builder_flags: tuple[str, ...] = ()
    network_flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "convert_to_fp16_with": self.convert_to_fp16_with,
            "set_builder_flags": list(self.set_builder_flags),
            "clear_builder_flags": list(self.clear_builder_flags),
            "network_flags": list(self.network_flags),
            "notes": list(self.notes),
        }


def plan_tensorrt_build(
    requested: str,
    onnx_precision: str,
    tensorrt_version: str,
    installed: Sequence[str] = (),
    allow_tf32: bool = False,
) -> TensorRTPlan:
    """Decide how to get a `requested` engine from an ONNX whose graph is `onnx_precision`.

    `installed` lists the converters present (names from FP16_CONVERTERS); ModelOpt AutoCast
    is preferred (NVIDIA's tool for TensorRT), onnxconverter-common is the CPU fallback.
    TF32 is cleared for FP32 engines unless `allow_tf32`, so an "FP32" engine is FP32 (as the
    OpenVINO f32 hint is). Raises ConfigError when the ONNX cannot give that precision.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}", f"use one of {', '.join(PRECISIONS)}")
    network_flags = tuple(network_creation_flags(tensorrt_version))
    clear = () if allow_tf32 or requested != "fp32" else ("TF32",)
    if requested == "int8":
        if onnx_precision != "int8":
            raise ConfigError(
                "an INT8 TensorRT engine needs an ONNX with explicit Q/DQ nodes (TensorRT 11 has "
                "no INT8 calibration); this ONNX has none",
                "make one with: dlopt quantize MODEL.onnx --target tensorrt, then build that",
            )
        return TensorRTPlan("int8", network_flags=network_flags)
    if onnx_precision == "int8":
        raise ConfigError(
            f"this ONNX has Q/DQ nodes, so its engine would be INT8, not {requested}",
            "build it with --precision int8, or build the FP32 ONNX instead",
        )
    if requested == "fp32":
        if onnx_precision == "fp16":
            raise ConfigError(
                "this ONNX has float16 weights, so its engine cannot be FP32",
                "build the FP32 ONNX, or ask for --precision fp16",
            )
        return TensorRTPlan("fp32", clear_builder_flags=clear, network_flags=network_flags)
    if onnx_precision == "fp16":
        return TensorRTPlan("fp16", network_flags=network_flags, notes=("ONNX already FP16",))
    converter = next((name for name in FP16_CONVERTERS if name in installed), None)
    if converter is None:
        raise ConfigError(
            "an FP16 engine needs the ONNX converted to FP16 first, and neither ModelOpt nor "
            "onnxconverter-common is installed",
            "pip install onnxconverter-common (or nvidia-modelopt[onnx] on the GPU machine)",
        )
    return TensorRTPlan("fp16", convert_to_fp16_with=converter, network_flags=network_flags)


def workspace_bytes(workspace_mb: int | None) -> int | None:
    """`--workspace MB` in bytes (None: TensorRT's default, the device's memory)."""
    if workspace_mb is None:
        return None
    if workspace_mb < 1:
        raise ConfigError(f"--workspace {workspace_mb} must be at least 1 MB")
    return int(workspace_mb) * (1 << 20)


@dataclass(frozen=True)
class GpuEnvironment:
    """What decides whether a serialized engine can run: TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def to_dict(self) -> dict[str, str]:
        return {
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
        }


def engine_compatibility_problems(recorded: Mapping[str, Any], here: GpuEnvironment) -> list[str]:
    """Why an engine built in `recorded` (its manifest's `tensorrt` block) cannot run `here`.

    A plan is tied to the exact TensorRT version that built it (unless built
    version-compatible) and to the GPU's compute capability (unless built with a hardware
    compatibility level); a different GPU name with the same compute capability is allowed
    but slower tactics may have been chosen, so it is only refused when the capability differs.
    """
    problems: list[str] = []
    version = str(recorded.get("tensorrt_version") or "")
    if not version:
        problems.append("its manifest does not record the TensorRT version that built it")
    elif version != here.tensorrt_version and not recorded.get("version_compatible"):
        problems.append(
            f"it was built by TensorRT {version} and this is TensorRT {here.tensorrt_version}"
        )
    capability = str(recorded.get("compute_capability") or "")
    built_for = f"{recorded.get('gpu_name', 'an unknown GPU')} (sm {capability or '?'})"
    if not capability:
        problems.append("its manifest does not record the GPU it was built for")
    elif capability != here.compute_capability and not recorded.get("hardware_compatibility"):
        problems.append(
            f"it was built for {built_for} and this GPU is {here.gpu_name} "
            f"(sm {here.compute_capability})"
        )
    return problems


def check_engine_compatible(
    engine: str, recorded: Mapping[str, Any] | None, here: GpuEnvironment
) -> None:
    """Raise BackendError naming every reason `engine` cannot be loaded here."""
    if recorded is None:
        raise BackendError(
            f"{engine} has no dlopt manifest, so its TensorRT version and GPU are unknown",
            "build it with dlopt build --backend tensorrt, which records them",
        )
    problems = engine_compatibility_problems(recorded, here)
    if problems:
        raise BackendError(
            f"cannot load TensorRT engine {engine}: {'; '.join(problems)}",
            "rebuild it here from its ONNX with dlopt build --backend tensorrt",
        )


def ort_provider_plan(
    requested: str,
    available: Sequence[str],
    device_id: int = 0,
    workspace_mb: int | None = None,
    cache_dir: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """ONNX Runtime providers, in priority order, with their options, for `--provider`.

    `auto`: TensorRT, then CUDA, then CPU, as far as the installed wheel offers them; a named
    provider must be available (else BackendError listing what is) and falls back only to CPU
    for the nodes it cannot run. The TensorRT provider gets engine and timing caches in
    `cache_dir` (rebuilding engines on every load would be timed as first-run cost).
    """
    if requested not in ORT_PROVIDER_CHOICES:
        raise ConfigError(
            f"unknown provider {requested!r}", f"use one of {', '.join(ORT_PROVIDER_CHOICES)}"
        )
    if requested == "auto":
        wanted = [key for key in ("tensorrt", "cuda", "cpu") if ORT_PROVIDERS[key] in available]
    else:
        if ORT_PROVIDERS[requested] not in available:
            raise BackendError(
                f"ONNX Runtime here has no {ORT_PROVIDERS[requested]} (it has "
                f"{', '.join(available) or 'none'})",
                "install onnxruntime-gpu (and TensorRT for the tensorrt provider) on a machine "
                "with an NVIDIA GPU, or use --provider cpu",
            )
        wanted = [requested] if requested == "cpu" else [requested, "cpu"]
    plan: list[tuple[str, dict[str, Any]]] = []
    for key in wanted:
        options: dict[str, Any] = {}
        if key in ("tensorrt", "cuda"):
            options["device_id"] = device_id
        if key == "tensorrt":
            size = workspace_bytes(workspace_mb)
            if size is not None:
                options["trt_max_workspace_size"] = size
            if cache_dir is not None:
                options.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=cache_dir,
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=cache_dir,
                )
        plan.append((ORT_PROVIDERS[key], options))
    return plan


def uses_gpu(providers: Sequence[str]) -> bool:
    """Whether a session with these providers runs on the GPU (GPU timing and memory rules)."""
    return any(name in (ORT_PROVIDERS["tensorrt"], ORT_PROVIDERS["cuda"]) for name in providers)
