"""OpenVINO IR (`model.xml` + `model.bin`) from an ONNX file or a torch model.

- FP32: weights stored FP32 (`ov.save_model(..., compress_to_fp16=False)`: its default would
  silently store FP16 weights).
- FP16: weights stored FP16 (`compress_to_fp16=True`); the CPU decompresses them at load.
- INT8: NNCF post-training quantization on calibration data, then saved.
Inputs can be reshaped to static shapes (`static_shapes`) or bounded ranges (`--shapes`).
The IR is checked against its source (ONNX Runtime for ONNX, torch for torch sources) at
several shapes, compiled with the recorded properties (INFERENCE_PRECISION_HINT f32 by default:
on CPUs with bf16 OpenVINO would otherwise run in bf16).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlopt.artifacts import Manifest, move_into_place, staging_dir, write_manifest
from dlopt.backends.openvino_backend import compile_properties
from dlopt.errors import DataError, first_line
from dlopt.optimize.build.options import BuildError, BuildOptions, BuildResult, Progress
from dlopt.optimize.build.shape_profiles import ShapeRange, parse_shape_ranges, resolve_shape_ranges
from dlopt.optimize.export.parity import DEFAULT_TOLERANCES, ParityReport, Tolerance, check_parity
from dlopt.optimize.model_input import ModelInput, parent_record
from dlopt.optimize.openvino_ir import save_ir
from dlopt.optimize.runners import RunFn, ir_runner, onnx_runner
from dlopt.specs import Dim, TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.quantize.calibration import SampleFeeds

DRIFT_SAMPLES = 32
# FP16 weights keep about 3 decimal digits, and the error grows with the size of the values
# computed with, not of each output element: 0.5% of the output's scale (max |b|) plus 1% of
# each element. (A fixed atol of 0.02 refused a right ResNet-50 IR whose logits reach 50:
# max error 0.047, 1e-3 of the scale.) INT8 is judged by drift and task metrics, not here.
PARITY_TOLERANCES = {
    "fp32": DEFAULT_TOLERANCES["float32"],
    "fp16": Tolerance(5e-3, 1e-2, scale_relative=True),
}


def build_openvino_ir(
    model: ModelInput, output_dir: Path, options: BuildOptions, say: Progress
) -> BuildResult:
    """Convert, optionally reshape and quantize, save and check an IR; see the module doc."""

    ranges = _requested_ranges(model.specs, options)
    say("converting to OpenVINO")
    ov_model = _convert(model)
    if ranges:
        ov_model.reshape({name: _partial_shape(r) for name, r in ranges.items()})
    specs = reshaped_specs(model.specs, ranges)
    quantization: dict[str, Any] = {}
    calibration_feeds: Sequence[Mapping[str, np.ndarray]] = []
    if options.precision == "int8":
        ov_model, quantization, feeds = _quantize(ov_model, specs, options, say)
        calibration_feeds = feeds.first(DRIFT_SAMPLES)
    weights_fp16 = options.weights_fp16()
    final_path = output_dir / "model.xml"
    with staging_dir(output_dir) as staging:
        staged = staging / "model.xml"
        say("saving the IR")
        save_ir(ov_model, staged, compress_to_fp16=weights_fp16)
        properties = compile_properties(options.precision_hint)
        reference = _within(ranges, _reference_runner(model))
        candidate = ir_runner(staged, options.precision_hint, model.output_names)
        if options.precision == "int8":
            say("measuring INT8 drift on calibration samples")
            drift = _calibration_drift(reference, candidate, calibration_feeds)
            checks = {"calibration_drift": drift}
            parity = None
        else:
            say("checking the IR against its source at several shapes")
            parity = check_parity(
                reference, candidate, specs, PARITY_TOLERANCES[options.precision], options.seed
            )
            checks = {"parity": parity.to_dict()}
        manifest = Manifest(
            format="openvino_ir",
            file=final_path.name,
            precision=options.precision,
            status="failed" if parity is not None and not parity.passed else "ok",
            inputs=[spec.to_dict() for spec in specs],
            outputs=list(model.output_names or []),
            source=dict(model.manifest.get("source", {}))
            if model.manifest
            else {"ref": model.text},
            parent=parent_record(model),
            recipe={
                "step": "build",
                "backend": "openvino",
                "precision": options.precision,
                "converted_from": model.kind,
                "weights_compressed_to_fp16": weights_fp16,
                "shapes": {name: r.to_dict() for name, r in ranges.items()},
                "static_shapes": options.static_shapes,
                "quantization": quantization or None,
                "compile_properties": properties,
            },
            checks=checks,
        )
        staged_manifest = write_manifest(staged, manifest)
        # The manifest is written in staging too: a failed write (a full disk) leaves an earlier
        # IR in output_dir as it was. Model file last: a reader never finds a model.xml whose
        # .bin is not there yet.
        manifest_path = output_dir / staged_manifest.name
        move_into_place([staged_manifest, staging / "model.bin", staged], output_dir)
    if parity is not None and not parity.passed:
        raise BuildError(_parity_message(parity, final_path), _parity_hint(options))
    return BuildResult(
        "openvino",
        options.precision,
        final_path,
        manifest_path,
        {
            "weights_compressed_to_fp16": weights_fp16,
            "compile_properties": properties,
            "parity": parity,
            "quantization": quantization or None,
            "checks": checks,
        },
    )


def reshaped_specs(
    specs: Sequence[TensorSpec], ranges: Mapping[str, ShapeRange]
) -> list[TensorSpec]:
    """The input specs after a reshape: inputs made static lose their dynamic axes."""
    result: list[TensorSpec] = []
    for spec in specs:
        shape_range = ranges.get(spec.name)
        if shape_range is None or not shape_range.is_static:
            result.append(spec)
            continue
        dims = tuple(Dim(size, None) for size in shape_range.opt)
        result.append(TensorSpec(spec.name, dims, spec.dtype, spec.value_range))
    return result


def _requested_ranges(specs: Sequence[TensorSpec], options: BuildOptions) -> dict[str, ShapeRange]:
    given = parse_shape_ranges(options.shapes)
    if not given and not options.static_shapes:
        return {}
    ranges = resolve_shape_ranges(specs, given)
    if options.static_shapes:
        ranges = {name: ShapeRange(r.opt, r.opt, r.opt) for name, r in ranges.items()}
    else:
        ranges = {name: r for name, r in ranges.items() if name in given}
    return ranges


def _partial_shape(shape_range: ShapeRange) -> Any:
    import openvino as ov

    dims = [
        ov.Dimension(low) if low == high else ov.Dimension(low, high)
        for low, high in zip(shape_range.min, shape_range.max, strict=True)
    ]
    return ov.PartialShape(dims)


def _convert(model: ModelInput) -> Any:
    import openvino as ov

    try:
        if model.kind == "onnx":
            ov_model = ov.convert_model(str(model.path))
        else:
            ov_model = _convert_torch(model)
    except Exception as error:
        raise BuildError(
            f"openvino.convert_model fails on {model.text}: {first_line(error)}",
            "export it to ONNX first (dlopt export -f onnx) and build from the .onnx",
        ) from error
    names = model.output_names
    if names and len(names) == len(ov_model.outputs):
        for port, name in zip(ov_model.outputs, names, strict=True):
            port.get_tensor().set_names({name})
    return ov_model


def _convert_torch(model: ModelInput) -> Any:
    import openvino as ov

    from dlopt.specs import random_feed
    from dlopt.torch_io import FlatIOModule, to_tensors

    wrapper = FlatIOModule(model.loaded.module, [spec.name for spec in model.specs])
    example = to_tensors(random_feed(model.specs, seed=0), model.specs)
    # Positional *inputs have no names to match `input=`: name and shape the ports afterwards.
    converted = ov.convert_model(wrapper, example_input=example)
    shapes = {}
    for port, spec in zip(converted.inputs, model.specs, strict=True):
        port.get_tensor().set_names({spec.name})
        shapes[spec.name] = ov.PartialShape([-1 if dim.axis else dim.size for dim in spec.dims])
    converted.reshape(shapes)
    return converted


def _quantize(
    ov_model: Any, specs: Sequence[TensorSpec], options: BuildOptions, say: Progress
) -> tuple[Any, dict[str, Any], SampleFeeds]:
    """INT8 through dlopt's one NNCF path (the openvino quantize target's)."""
    from dlopt.optimize.quantize.openvino import nncf_int8

    if options.calibration is None:
        raise DataError(
            "an INT8 IR needs calibration data",
            "pass --calibration DATA (e.g. sample:digits_cnn:calibration, a .npz, or "
            "file.py:function); --calibration synthetic works but gives poor scales",
        )
    return nncf_int8(
        ov_model, specs, options.calibration, options.calibration_size, say, seed=options.seed
    )


def _reference_runner(model: ModelInput) -> RunFn:
    if model.kind == "torch":
        from dlopt.torch_io import run_torch

        module = model.loaded.module
        return lambda feed: run_torch(module, feed, model.specs)
    assert model.path is not None  # an ONNX input always has its file
    return onnx_runner(model.path, model.output_names)


def _calibration_drift(
    reference: RunFn, candidate: RunFn, feeds: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, Any]:
    """Drift of the INT8 IR from its source on calibration samples (random inputs would be
    out of distribution and say nothing about a quantized model)."""
    from dlopt.harness.drift import drift

    expected: dict[str, list[np.ndarray]] = {}
    actual: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        for store, run in ((expected, reference), (actual, candidate)):
            for name, value in run(feed).items():
                store.setdefault(name, []).append(np.asarray(value))
    return {
        "samples": len(feeds),
        "outputs": {
            name: drift(np.concatenate(actual[name]), np.concatenate(values)).to_dict()
            for name, values in expected.items()
        },
    }


def _within(ranges: Mapping[str, ShapeRange], run: RunFn) -> RunFn:
    """The reference, refusing shapes outside the built ranges (parity lists them as skipped)."""

    def checked(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, shape_range in ranges.items():
            shape = feed[name].shape
            if not all(
                a <= s <= b for a, s, b in zip(shape_range.min, shape, shape_range.max, strict=True)
            ):
                raise ValueError(f"{name}{list(shape)} is outside the built range {shape_range}")
        return run(feed)

    return checked


def _parity_message(parity: ParityReport, path: Path) -> str:
    row = parity.first_failure()
    if row is None:
        return f"the IR {path} could not be checked at any shape"
    if row.note:
        return f"the IR {path} fails at {row.shapes}: {row.note}"
    return (
        f"the IR {path} diverges from its source: output {row.output} at {row.shapes} has max "
        f"abs error {row.max_abs_error:.3g} (atol {row.atol:g}, rtol {row.rtol:g}); it is kept "
        "and marked failed"
    )


def _parity_hint(options: BuildOptions) -> str:
    if options.shapes or options.static_shapes:
        return "check the --shapes ranges against what the model supports"
    return "rebuild from the ONNX export (dlopt export -f onnx), or report the model"
