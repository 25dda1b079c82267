"""What `dlopt quantize` can be asked for: modes, targets, the validated options, the result.

Every target module and the dispatcher import these from here, so none of them imports another
to reach a shared type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dlopt.errors import ConfigError, DloptError
from dlopt.optimize.quantize.budget import DEFAULT_BUDGETS, NO_BUDGET, DriftBudget, parse_budget


class QuantizeError(DloptError):
    """Quantization failed for a reason the user can act on."""


MODES = ("auto", "dynamic", "static", "fp16", "bf16")
TARGETS = ("onnxruntime", "openvino", "tensorrt", "torch")
METHODS = ("minmax", "entropy", "percentile")
MODEL_TYPES = ("auto", "transformer", "other")
Progress = Callable[[str], None]

# Why a (target, mode) pair is not offered, with what to use instead.
UNSUPPORTED: dict[tuple[str, str], tuple[str, str]] = {
    ("onnxruntime", "bf16"): (
        "ONNX Runtime's CPU provider has no bf16 kernels for most operators",
        "use --target openvino --mode bf16, or --mode fp16",
    ),
    ("openvino", "dynamic"): (
        "OpenVINO has no dynamic-INT8 model format (its CPU plugin quantizes activations at "
        "run time on its own)",
        "use --target openvino --mode static (NNCF) with --calibration DATA",
    ),
    ("tensorrt", "dynamic"): (
        "TensorRT builds INT8 engines only from explicit Q/DQ graphs",
        "use --target tensorrt --mode static with --calibration DATA",
    ),
    ("tensorrt", "bf16"): (
        "dlopt has no bf16 ONNX conversion for TensorRT yet",
        "use --mode fp16",
    ),
    ("torch", "static"): (
        "static INT8 for torch is torch.ao's deprecated FX flow, the least accurate variant here",
        "use --target onnxruntime or --target openvino for static INT8",
    ),
    ("torch", "fp16"): (
        "CPU torch runs fp16 slower than fp32",
        "use --target onnxruntime --mode fp16 or --target openvino --mode fp16",
    ),
    ("torch", "bf16"): (
        "a bf16 torch artifact is not offered; OpenVINO runs bf16 on this CPU",
        "use --target openvino --mode bf16",
    ),
}


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize; validated on creation (ConfigError names field, value and choices).

    `evaluation` is the data drift is measured on (default: the calibration data, or random
    inputs when there is none); `max_drift` holds `METRIC=VALUE` budgets and needs `evaluation`;
    empty, the default budget applies (`DEFAULT_BUDGETS`); `("none",)` opts out of any budget.
    """

    # The fields with a fixed set of values: checked here, listed in the config schema.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "mode": MODES,
        "target": TARGETS,
        "method": METHODS,
        "model_type": MODEL_TYPES,
    }

    mode: str = "auto"
    target: str = "onnxruntime"
    calibration: str | None = None
    calibration_size: int = 300
    method: str = "minmax"
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    evaluation: str | None = None
    evaluation_size: int = 300
    max_drift: tuple[str, ...] = ()
    model_type: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"quantize {name} {value!r} is not available",
                    f"use one of {', '.join(allowed)}",
                )
        if (self.target, self.mode) in UNSUPPORTED:
            reason, hint = UNSUPPORTED[(self.target, self.mode)]
            raise ConfigError(f"--target {self.target} --mode {self.mode}: {reason}", hint)
        for name in ("calibration_size", "evaluation_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} {getattr(self, name)} is out of range", "give at least 1"
                )
        if self.mode == "static" and not self.calibration:
            raise ConfigError(
                "static quantization needs calibration data",
                "pass --calibration DATA (e.g. models/digits_cnn/data.py:calibration)",
            )
        if self.mode == "auto" and self.target in ("openvino", "tensorrt") and not self.calibration:
            raise ConfigError(
                f"--target {self.target} quantizes statically and needs calibration data",
                "pass --calibration DATA (e.g. models/digits_cnn/data.py:calibration)",
            )
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "max_drift", tuple(self.max_drift))
        if NO_BUDGET in (text.strip().lower() for text in self.max_drift):
            if len(self.max_drift) > 1:
                raise ConfigError(
                    f"--max-drift none turns every budget off, but {len(self.max_drift)} "
                    "budgets were given",
                    "give either --max-drift none or METRIC=VALUE budgets",
                )
            return
        given = [parse_budget(text) for text in self.max_drift]  # ConfigError if malformed
        if given and not self.evaluation:
            raise ConfigError(
                "--max-drift needs evaluation data to measure drift on",
                "pass --eval DATA (held-out data, with labels for accuracy_drop)",
            )

    @property
    def budget_source(self) -> str:
        """`default` (no --max-drift), `given` (METRIC=VALUE budgets) or `none` (opted out)."""
        if not self.max_drift:
            return "default"
        return "none" if self.max_drift[0].strip().lower() == NO_BUDGET else "given"

    def budgets(self) -> list[DriftBudget]:
        """The budgets quantization must keep: the user's, the default ones, or none."""
        source = self.budget_source
        if source == "default":
            return list(DEFAULT_BUDGETS)
        return [] if source == "none" else [parse_budget(text) for text in self.max_drift]

    def precision(self) -> str:
        return "int8" if self.mode in ("auto", "dynamic", "static") else self.mode


@dataclass
class QuantizeResult:
    path: Path
    manifest_path: Path
    details: dict[str, Any] = field(default_factory=dict)
