"""The two hand-made QDQ rewrites of the static transformer recipe, on a graph built here:
int8 activations made uint8 (the same values, ORT's fast U8S8 kernels), and activation
quantizers removed for the accuracy fallback (the product back in float, weights dequantized)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from dlopt.optimize.quantize.onnx_nncf import activation_products, activations_to_unsigned
from dlopt.optimize.quantize.qdq_edit import activation_dequantizers, remove_activation_quantizers

WEIGHT_INT8 = np.random.default_rng(0).integers(-127, 128, (8, 4)).astype(np.int8)
WEIGHT_SCALE = np.linspace(0.01, 0.04, 4).astype(np.float32)


def qdq_matmul() -> onnx.ModelProto:
    """x -> Q(int8, zero point -3) -> DQ -> MatMul(DQ(int8 weight, per column)) -> y, and a
    second, activation x activation MatMul(y, y^T)."""
    initializers = [
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(-3, np.int8), "x_zero"),
        numpy_helper.from_array(WEIGHT_INT8, "w_int8"),
        numpy_helper.from_array(WEIGHT_SCALE, "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="dq"),
        helper.make_node(
            "DequantizeLinear", ["w_int8", "w_scale", "w_zero"], ["w"], name="w_dq", axis=1
        ),
        helper.make_node("MatMul", ["x_dq", "w"], ["y"], name="product"),
        helper.make_node("Transpose", ["y"], ["y_t"], name="transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["y", "y_t"], ["z"], name="scores"),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 3])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


X = np.random.default_rng(1).uniform(-2, 4, (3, 8)).astype(np.float32)


def test_int8_activations_become_uint8_with_the_same_outputs() -> None:
    model = qdq_matmul()
    before = run(model, X)

    changed = activations_to_unsigned(model)

    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantize = next(node for node in model.graph.node if node.op_type == "QuantizeLinear")
    assert changed == 1 and initializers[quantize.input[2]].dtype == np.uint8
    assert initializers[quantize.input[2]] == 125  # -3 + 128
    assert initializers["w_zero"].dtype == np.int8  # weights stay signed
    assert "x_zero" not in initializers  # the int8 zero point no longer read
    np.testing.assert_array_equal(run(model, X), before)


def test_activation_products_are_the_ones_without_a_constant_input() -> None:
    assert activation_products(qdq_matmul()) == ["scores"]


def test_removing_an_activation_quantizer_puts_the_product_back_in_float(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "q.onnx", tmp_path / "float.onnx"
    onnx.save(qdq_matmul(), str(source))
    assert activation_dequantizers(onnx.load(str(source))) == ["dq"]

    remove_activation_quantizers(source, target, ["dq"])

    graph = onnx.load(str(target)).graph
    assert not {"QuantizeLinear", "DequantizeLinear"} & {node.op_type for node in graph.node}
    y = X @ (WEIGHT_INT8.astype(np.float32) * WEIGHT_SCALE)
    np.testing.assert_allclose(run(target, X), y @ y.T, rtol=1e-5, atol=1e-4)
    assert not np.allclose(run(source, X), y @ y.T, rtol=1e-5, atol=1e-4)  # it was quantized
