"""`quantize_model`: an FP32 model in, a smaller-precision artifact with its manifest out.

Each (target, mode) pair is glue over the library made for it:
- onnxruntime, dynamic | static: `onnxruntime.quantization` (`quantize_onnxruntime`);
- tensorrt, static: ORT's `quantize_static` writing the explicit S8S8 Q/DQ ONNX TensorRT builds
  INT8 engines from (`dlopt build --backend tensorrt` makes the engine);
- onnxruntime | tensorrt, fp16: onnxconverter-common's float16 conversion, I/O types kept;
- openvino, static: NNCF (`quantize_openvino`), `quantize_with_accuracy_control` for budgets;
- openvino, fp16 | bf16: an IR with FP16 weights / compiled with a bf16 precision hint;
- torch, dynamic: `torch.ao.quantization.quantize_dynamic` to TorchScript (deprecated path).
Drift against the FP32 parent is measured on evaluation data and recorded in the manifest;
`max_drift` budgets make it a condition: over budget, the ONNX targets return the most
sensitive nodes to float a group at a time, and a budget that still fails leaves nothing behind
(BudgetNotMetError, exit 1). The same model, data and options give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlopt.artifacts import (
    Manifest,
    manifest_path,
    move_into_place,
    read_manifest,
    sha256_file,
    staging_dir,
    write_manifest,
)
from dlopt.errors import ConfigError
from dlopt.optimize.accuracy_aware import DriftBudget, parse_budget
from dlopt.optimize.quantize_check import Staged
from dlopt.optimize.quantize_onnxruntime import QuantizeError
from dlopt.specs import TensorSpec

MODES = ("dynamic", "static", "fp16", "bf16")
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
    inputs when there is none); `max_drift` holds `METRIC=VALUE` budgets and needs `evaluation`.
    """

    mode: str = "static"
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
        for name, allowed in (
            ("mode", MODES),
            ("target", TARGETS),
            ("method", METHODS),
            ("model_type", MODEL_TYPES),
        ):
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
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "max_drift", tuple(self.max_drift))
        budgets = self.budgets()  # raises ConfigError on bad METRIC=VALUE
        if budgets and not self.evaluation:
            raise ConfigError(
                "--max-drift needs evaluation data to measure drift on",
                "pass --eval DATA (held-out data, with labels for accuracy_drop)",
            )
        if budgets and self.target == "torch":
            raise ConfigError(
                "--max-drift is not available for --target torch",
                "drop --max-drift, or quantize for --target onnxruntime or openvino",
            )

    def budgets(self) -> list[DriftBudget]:
        return [parse_budget(text) for text in self.max_drift]

    def precision(self) -> str:
        return "int8" if self.mode in ("dynamic", "static") else self.mode


@dataclass
class QuantizeResult:
    path: Path
    manifest_path: Path
    details: dict[str, Any] = field(default_factory=dict)


def quantize_model(
    model: str,
    output_dir: Path,
    options: QuantizeOptions,
    progress: Progress | None = None,
    weights: Path | None = None,
    input_specs: Sequence[str] = (),
) -> QuantizeResult:
    """Quantize `model` into `output_dir` (model.onnx, model.xml or model.ts, with its manifest).

    ONNX targets and openvino take an FP32 ONNX file; the torch target a torch source
    (`file.py:factory` with `weights`). Raises SourceError, DataError, ConfigError,
    QuantizeError, and BudgetNotMetError when `max_drift` cannot be met.
    """
    say = progress or (lambda message: None)
    if options.target == "torch":
        return _quantize_torch(model, output_dir, options, say, weights, input_specs)
    path, parent_manifest, specs = _onnx_parent(model, options)
    with staging_dir(output_dir) as staging:
        staged = _stage(path, specs, parent_manifest, staging, options, say)
        model_file = staged.files[-1]
        manifest = Manifest(
            format=staged.format,
            file=model_file.name,
            precision=options.precision(),
            inputs=[spec.to_dict() for spec in specs],
            outputs=list(parent_manifest.get("outputs", [])),
            opset=parent_manifest.get("opset"),
            source=dict(parent_manifest.get("source", {})),
            parent={
                "path": str(path.resolve()),
                "sha256": sha256_file(path),
                "format": "onnx",
                "precision": parent_manifest.get("precision", "fp32"),
            },
            recipe={
                "step": "quantize",
                **asdict(options),
                "exclude": list(options.exclude),
                "max_drift": list(options.max_drift),
                **staged.recipe,
            },
            checks={"drift": staged.drift},
        )
        sidecar = write_manifest(model_file, manifest)
        move_into_place([*staged.files[:-1], sidecar, model_file], output_dir)
    final_path = output_dir / model_file.name
    return QuantizeResult(
        final_path, manifest_path(final_path), {**staged.recipe, "drift": staged.drift}
    )


def _onnx_parent(
    model: str, options: QuantizeOptions
) -> tuple[Path, dict[str, Any], list[TensorSpec]]:
    from dlopt.sources import onnx_input_specs, parse_source

    ref = parse_source(model)
    if ref.kind != "onnx" or ref.path is None:
        raise QuantizeError(
            f"{model} is a {ref.kind} model; --target {options.target} quantizes an ONNX file",
            "export it first: dlopt export SOURCE --format onnx"
            + ("" if ref.kind == "onnx" else "; --target torch takes a torch source"),
        )
    parent_manifest = read_manifest(ref.path) or {}
    specs = [TensorSpec.from_dict(item) for item in parent_manifest.get("inputs", [])] or (
        onnx_input_specs(ref.path)
    )
    return ref.path, parent_manifest, specs


def _stage(
    parent: Path,
    specs: list[TensorSpec],
    parent_manifest: dict[str, Any],
    staging: Path,
    options: QuantizeOptions,
    say: Progress,
) -> Staged:
    if options.target == "openvino":
        from dlopt.optimize.quantize_openvino import quantize_to_ir

        return quantize_to_ir(parent, specs, parent_manifest, staging, options, say)
    if options.mode == "fp16":
        from dlopt.optimize.quantize_float import onnx_fp16

        return onnx_fp16(parent, specs, staging, options, say)
    from dlopt.optimize.quantize_onnxruntime import quantize_onnx_within_budget

    return quantize_onnx_within_budget(parent, specs, staging, options, say)


def _quantize_torch(
    model: str,
    output_dir: Path,
    options: QuantizeOptions,
    say: Progress,
    weights: Path | None,
    input_specs: Sequence[str],
) -> QuantizeResult:
    from dlopt.optimize.quantize_torch import quantize_torch_dynamic

    return quantize_torch_dynamic(model, output_dir, options, say, weights, input_specs)
