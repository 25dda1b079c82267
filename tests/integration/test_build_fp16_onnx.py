"""The CPU half of the TensorRT FP16 path: the ONNX conversion and its detection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dlopt.optimize.build.tensorrt import (
    convert_onnx_to_fp16,
    installed_fp16_converters,
    onnx_precision,
)
from dlopt.sources import onnx_input_specs
from dlopt.specs import random_feed


def test_fp16_conversion_keeps_io_types_and_outputs(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    source = exported_sample("digits_cnn") / "model.onnx"
    assert "onnxconverter-common" in installed_fp16_converters()
    target = tmp_path / "model.fp16.onnx"
    convert_onnx_to_fp16(source, target, "onnxconverter-common")
    assert onnx_precision(source) == "fp32"
    assert onnx_precision(target) == "fp16"
    specs = onnx_input_specs(source)
    feed = random_feed(specs, {"batch": 3})
    expected = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, feed)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"  # I/O kept float32
    actual = session.run(None, feed)
    assert actual[0].dtype == np.float32
    assert np.abs(actual[0] - expected[0]).max() < 5e-2
    assert target.stat().st_size < 0.6 * source.stat().st_size
