"""The ONNX files dlopt writes carry no graph.value_info, so ONNX Runtime does not fuse their
residual Add + LayerNormalization into its slow SkipLayerNormalization kernel at load
(dlopt/optimize/onnx_value_info.py). Counted in ORT's own optimized graph, so that an ORT that
fuses anyway, or one that stops needing the workaround, is noticed here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from dlopt.optimize.quantize import QuantizeOptions, quantize_model


def ops_after_ort_load(model: Path, scratch: Path) -> Counter[str]:
    """Op types of the graph ONNX Runtime runs (ORT_ENABLE_ALL, as dlopt's backend loads)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(scratch / f"{model.stem}.optimized.onnx")
    options.log_severity_level = 3  # its "hardware specific optimizations" warning
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
    return Counter(node.op_type for node in graph.node)


def test_exported_transformer_keeps_layer_norm_unfused(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    import onnx

    exported = exported_sample("text_transformer") / "model.onnx"
    with_shapes = tmp_path / "with_value_info.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(onnx.load(str(exported))), str(with_shapes))

    as_written = ops_after_ort_load(exported, tmp_path)
    with_value_info = ops_after_ort_load(with_shapes, tmp_path)

    assert not onnx.load(str(exported), load_external_data=False).graph.value_info
    assert as_written["SkipLayerNormalization"] == 0 and as_written["LayerNormalization"] > 0
    # The same graph with its shapes declared is what ORT 1.32 fuses; if this starts failing,
    # ORT changed the fusion's conditions: re-measure and update onnx_value_info.py.
    assert with_value_info["SkipLayerNormalization"] > 0, with_value_info


def test_quantized_transformer_keeps_layer_norm_unfused(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    import onnx

    fp32 = exported_sample("text_transformer") / "model.onnx"
    options = QuantizeOptions(mode="dynamic", evaluation="sample:text_transformer:evaluation")

    result = quantize_model(str(fp32), tmp_path / "q", options)

    assert not onnx.load(str(result.path), load_external_data=False).graph.value_info
    ops = ops_after_ort_load(result.path, tmp_path)
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] > 0, ops
