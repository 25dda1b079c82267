"""What to build for TensorRT from an ONNX: pure logic, CPU-testable.

TensorRT 11 has no weak typing (no BuilderFlag.FP16/INT8, no calibrators): precision lives in
the ONNX graph. So an FP16 engine is built from an FP16 ONNX (converted first, I/O kept
float32), an INT8 engine from an explicit Q/DQ ONNX (`dlopt quantize --target tensorrt`).
Supported: TensorRT 10.12 and later 10.x (networks created STRONGLY_TYPED, the same behaviour)
and 11.x (always strongly typed; the flag is accepted and ignored, so it is not set).
It lives with the backend because the backend also builds engines from ONNX files it is given.
Nothing here imports tensorrt, onnx or a CUDA library.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlopt.backends.tensorrt.engine_checks import MIN_TENSORRT_VERSION, parse_version
from dlopt.errors import BackendError, ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
STRONG_TYPING_BUILTIN_VERSION = (11, 0)
FP16_CONVERTERS = ("modelopt-autocast", "onnxconverter-common")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


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


def qdq_refusal(zero_points: Iterable[tuple[str, bool]]) -> str | None:
    """Why TensorRT cannot build a Q/DQ graph with these zero points, or None.

    `zero_points`: (numpy element type, all zero) of each Q/DQ zero point. TensorRT's ONNX
    parser takes symmetric quantization only (zero point 0) and quantized types int8/fp8/int4,
    not uint8 (onnx-tensorrt's operators.md): ONNX Runtime's U8S8 QDQ is refused here, before
    a build that would fail inside the parser.
    """
    points = list(zero_points)
    if any(element == "uint8" for element, _ in points):
        return (
            "has uint8 Q/DQ (ONNX Runtime's U8S8 format), which TensorRT does not build: it "
            "needs symmetric int8 Q/DQ"
        )
    if any(not all_zero for _, all_zero in points):
        return (
            "has Q/DQ with non-zero zero points (asymmetric quantization), which TensorRT does "
            "not build: it needs symmetric int8 Q/DQ"
        )
    return None


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
