"""FP16 ONNX for the onnxruntime and tensorrt targets: onnxconverter-common's float16
conversion with the float32 inputs and outputs kept, so callers feed the same arrays."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dlopt.errors import ConfigError, first_line
from dlopt.optimize.onnx_value_info import clear_value_info
from dlopt.optimize.quantize.check import (
    Staged,
    drift_record,
    onnx_runner,
    reference_set,
    require_budgets,
)
from dlopt.optimize.quantize.evaluation import measure_drift
from dlopt.optimize.quantize.options import QuantizeError
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions


def onnx_fp16(
    parent: Path,
    specs: Sequence[TensorSpec],
    staging: Path,
    options: QuantizeOptions,
    say: Callable[[str], None],
) -> Staged:
    """Convert `parent` to FP16, measure its drift, and hold it to `options.max_drift`."""
    if options.exclude:
        raise ConfigError(
            "--exclude is not available with --mode fp16", "drop --exclude for an FP16 model"
        )
    output = staging / "model.onnx"
    say("converting to FP16 (inputs and outputs stay float32)")
    convert_onnx_to_fp16(parent, output, "onnxconverter-common")
    clear_value_info(output)  # see dlopt/optimize/onnx_value_info.py
    say("measuring drift against the FP32 parent")
    evaluation = reference_set(parent, specs, options)
    budgets = options.budgets()
    try:
        runner = onnx_runner(output)
    except Exception as error:  # ORT rejects a graph the converter typed inconsistently
        raise QuantizeError(
            f"the FP16 conversion of {parent} does not load in ONNX Runtime: "
            f"{first_line(error, 200)}",
            "use --mode dynamic or --mode static, or --target openvino --mode fp16",
        ) from error
    measured = measure_drift(runner, evaluation, budgets)
    require_budgets(
        budgets,
        measured,
        f"FP16 {parent.name}",
        "use --target openvino --mode fp16, or another --mode",
        options.budget_source,
        evaluation,
    )
    recipe = {"tool": "onnxconverter-common float16", "keep_io_types": True}
    if options.target == "tensorrt":
        recipe["next_step"] = "dlopt build model.onnx --backend tensorrt --precision fp16"
    return Staged(
        [output], recipe, drift_record(evaluation, measured, budgets, options.budget_source)
    )


def convert_onnx_to_fp16(source: Path, target: Path, converter: str) -> None:
    """Write an FP16 copy of `source` (float32 inputs and outputs kept) with `converter`."""
    import onnx

    if converter == "modelopt-autocast":
        from modelopt.onnx import autocast  # NVIDIA ModelOpt, installed with dlopt[tensorrt]

        converted = autocast.convert_to_mixed_precision(
            onnx_path=str(source), low_precision_type="fp16", keep_io_types=True
        )
    elif converter == "onnxconverter-common":
        from onnxconverter_common import float16

        # A float32 Cast left in the graph (e.g. a mask's `.to(torch.float32)`) would be typed
        # float16 on the output and fail to load: keep Cast nodes as they are.
        block = [*float16.DEFAULT_OP_BLOCK_LIST, "Cast"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "number truncated" for every tiny weight
            converted = float16.convert_float_to_float16(
                onnx.load(str(source)), keep_io_types=True, op_block_list=block
            )
    else:
        raise ConfigError(f"unknown FP16 converter {converter!r}")
    onnx.save(converted, str(target))
