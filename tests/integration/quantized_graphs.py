"""What a quantized artifact must contain, read from the graph itself: a quantizer that copied
its input would pass every drift check (cosine 1.0), so the quantize tests look for the
quantized operators and the low-precision weights too."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _onnx_weights(path: Path) -> tuple[set[str], dict[str, int]]:
    """The op types of an ONNX graph and the bytes of its weights (initializers of more than
    one element) by element type."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights: dict[str, int] = {}
    for tensor in graph.initializer:
        array = onnx.numpy_helper.to_array(tensor)
        if array.size > 1:
            weights[array.dtype.name] = weights.get(array.dtype.name, 0) + array.nbytes
    return {node.op_type for node in graph.node}, weights


def assert_static_int8_onnx(path: Path) -> None:
    """QuantizeLinear/DequantizeLinear nodes and INT8 weights (ORT's QDQ format)."""
    ops, weights = _onnx_weights(path)
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops, f"no Q/DQ nodes in {path}: {ops}"
    assert weights.get("int8", 0) > 0, f"no INT8 weights in {path}: {weights}"


def assert_dynamic_int8_onnx(path: Path) -> None:
    """Integer products (MatMulInteger, ConvInteger or ORT's fused DynamicQuantizeMatMul) and
    INT8 weights."""
    ops, weights = _onnx_weights(path)
    integer_ops = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}
    assert ops & integer_ops, f"no integer products in {path}: {ops}"
    assert weights.get("int8", 0) > 0, f"no INT8 weights in {path}: {weights}"


def assert_fp16_onnx(path: Path) -> None:
    """Most weight bytes in float16."""
    _, weights = _onnx_weights(path)
    assert weights.get("float16", 0) > weights.get("float32", 0), f"{path}: {weights}"


def _ir_constants(path: Path) -> tuple[set[str], dict[str, int]]:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    constants: dict[str, int] = {}
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            name = op.get_element_type().get_type_name()
            size = int(np.prod(list(op.get_output_shape(0)) or [1]))
            constants[name] = constants.get(name, 0) + size
    return {op.get_type_name() for op in model.get_ops()}, constants


def assert_int8_ir(path: Path) -> None:
    """An NNCF INT8 IR: FakeQuantize operations and INT8 (or UINT8) weight constants."""
    ops, constants = _ir_constants(path)
    assert "FakeQuantize" in ops, f"no FakeQuantize in {path}: {sorted(ops)}"
    assert constants.get("i8", 0) + constants.get("u8", 0) > 0, f"{path}: {constants}"


def assert_fp16_ir(path: Path) -> None:
    """An IR whose weight constants are mostly f16."""
    _, constants = _ir_constants(path)
    assert constants.get("f16", 0) > constants.get("f32", 0), f"{path}: {constants}"


def fp32_ir(onnx_path: Path, folder: Path) -> Path:
    """The FP32 IR of an ONNX file (what a quantizer that converted but did not quantize
    would write)."""
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    return path
