"""What `dlopt build` can be asked for: backends, precisions, the validated options, the result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dlopt.backends.tensorrt.plan import PRECISIONS
from dlopt.errors import ConfigError, DloptError
from dlopt.optimize.build.shape_profiles import parse_shape_ranges

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

    # The fields with a fixed set of values: checked here, listed in the config schema.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "backend": BUILD_BACKENDS,
        "precision": PRECISIONS,
        "precision_hint": OPENVINO_HINTS,
    }

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
        for name, allowed in self.CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                what = name.replace("_", " ")
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
