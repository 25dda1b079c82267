"""`quantize_model`: an FP32 model in, a smaller-precision artifact with its manifest out.

Each (target, mode) pair is glue over the library made for it:
- onnxruntime, dynamic | static: `onnxruntime.quantization` (`onnxruntime.py`);
- tensorrt, static: ORT's `quantize_static` writing the explicit S8S8 Q/DQ ONNX TensorRT builds
  INT8 engines from (`dlopt build --backend tensorrt` makes the engine);
- onnxruntime | tensorrt, fp16: onnxconverter-common's float16 conversion, I/O types kept;
- openvino, static: NNCF (`openvino.py`), `quantize_with_accuracy_control` for budgets;
- openvino, fp16 | bf16: an IR with FP16 weights / compiled with a bf16 precision hint;
- torch, dynamic: `torch.ao.quantization.quantize_dynamic` to TorchScript (deprecated path).
Drift against the FP32 parent is measured on evaluation data and recorded in the manifest;
`max_drift` budgets make it a condition: over budget, the ONNX targets return the most
sensitive nodes to float a group at a time, and a budget that still fails leaves nothing behind
(BudgetNotMetError, exit 1). The same model, data and options give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
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
from dlopt.optimize.quantize.check import Staged, check_parent_loads
from dlopt.optimize.quantize.options import (
    Progress,
    QuantizeError,
    QuantizeOptions,
    QuantizeResult,
)
from dlopt.specs import TensorSpec

__all__ = ["QuantizeError", "QuantizeOptions", "QuantizeResult", "quantize_model"]


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
        if options.mode == "auto":  # torch has one INT8 recipe: dynamic
            options = replace(options, mode="dynamic")
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
        # --mode auto stages each candidate in its own sub-folder: paths are made relative to
        # where the winner ends up.
        sidecar = write_manifest(model_file, manifest, output_dir)
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
    check_parent_loads(ref.path)  # before any target's work: one line, exit 2
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
    from dlopt.onnx_normalize import normalize_onnx

    normalized = normalize_onnx(parent, staging / "normalized.onnx")
    if normalized.changes:
        say(f"normalized the graph: {'; '.join(normalized.changes)}")
    parent = normalized.path
    if options.mode == "auto" and options.target in ("onnxruntime", "openvino"):
        from dlopt.optimize.quantize.auto import quantize_auto

        staged = quantize_auto(parent, specs, parent_manifest, staging, options, say)
    else:
        if options.mode == "auto":  # tensorrt: its INT8 engines are built from static Q/DQ
            options = replace(options, mode="static")
        staged = _stage_one_recipe(parent, specs, parent_manifest, staging, options, say)
    if normalized.changes:
        staged.recipe["normalized_parent"] = normalized.changes
    return staged


def _stage_one_recipe(
    parent: Path,
    specs: list[TensorSpec],
    parent_manifest: dict[str, Any],
    staging: Path,
    options: QuantizeOptions,
    say: Progress,
) -> Staged:
    if options.target == "openvino":
        from dlopt.optimize.quantize.openvino import quantize_to_ir

        return quantize_to_ir(parent, specs, parent_manifest, staging, options, say)
    if options.mode == "fp16":
        from dlopt.optimize.quantize.fp16 import onnx_fp16

        return onnx_fp16(parent, specs, staging, options, say)
    from dlopt.optimize.quantize.ort_candidates import quantize_onnx_within_budget

    return quantize_onnx_within_budget(parent, specs, staging, options, say)


def _quantize_torch(
    model: str,
    output_dir: Path,
    options: QuantizeOptions,
    say: Progress,
    weights: Path | None,
    input_specs: Sequence[str],
) -> QuantizeResult:
    from dlopt.optimize.quantize.torch import quantize_torch_dynamic

    return quantize_torch_dynamic(model, output_dir, options, say, weights, input_specs)
