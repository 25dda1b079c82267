"""Static INT8 ONNX for ONNX Runtime on graphs with attention: NNCF's transformer scheme, then
the activations made unsigned for ORT's fast kernels.

Why not `onnxruntime.quantization.quantize_static`: on a pretrained MiniLM its U8S8 QDQ gave
cosine 0.37 against FP32 with its default op types, 0.94 with MatMuls only, and no calibration
method reached 0.995 (research for issue 17): the FFN-down MatMuls' activations (GELU output)
and LayerNorm outlier channels need SmoothQuant, which ORT only offers through Intel's
neural-compressor. NNCF's ONNX backend with `ModelType.TRANSFORMER` does what works (read in
nncf 3.4): SmoothQuant (alpha 0.95 on MatMuls), the MIXED preset (asymmetric activations,
symmetric per-channel weights), mean-of-min/max ranges, and quantizers only on MatMul/Conv
inputs (the mask Add, Softmax, LayerNorm and residual Adds stay float; so does attention x V).
On top of it dlopt leaves in float:
- embedding lookups (Gather): ORT dequantizes the whole INT8 table on every call (5.5 ms of a
  25 ms MiniLM run);
- MatMuls of two activations (Q x K^T): they cost accuracy and gain little.
Then every activation QuantizeLinear with an int8 zero point is rewritten to uint8 (zero point
+ 128, the same values): NNCF emits int8 whenever a range has negatives, and ORT's x86 kernels
run U8 activations x S8 weights (VNNI) but fall back to slow paths for S8 x S8 (NNCF's file
as emitted ran 1.26x FP32; unsigned, 2.5-2.7x, cosine 0.998 on MiniLM).
That rewrite is a protobuf edit no library offers, hence by hand.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.errors import first_line
from dlopt.optimize.quantize.calibration import Calibration, SampleFeeds, nncf_quiet
from dlopt.optimize.quantize.options import QuantizeError

# ONNX ops that mark an attention block.
ATTENTION_OPS = frozenset({"Softmax", "Attention", "MultiHeadAttention", "GroupQueryAttention"})
# Ops whose inputs may carry weights (a constant input is a weight, two activations are not).
PRODUCT_OPS = frozenset({"MatMul", "Gemm"})


def has_attention(model: Path) -> bool:
    """Whether the ONNX graph has an attention block (a Softmax or an attention op)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return any(node.op_type in ATTENTION_OPS for node in graph.node)


def activation_products(model: Any) -> list[str]:
    """Names of the MatMul/Gemm nodes whose inputs are both activations (no constant, nor a
    dequantized constant)."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    constants |= {  # weights already in Q/DQ form
        node.output[0]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in constants
    }
    return [
        node.name
        for node in graph.node
        if node.op_type in PRODUCT_OPS and not any(name in constants for name in node.input[:2])
    ]


def nncf_transformer_int8(
    parent: Path,
    output: Path,
    calibration: Calibration,
    excluded: Sequence[str],
) -> dict[str, Any]:
    """NNCF INT8 of the FP32 ONNX `parent` into `output` as described in the module docstring;
    returns the manifest's record of it. Raises QuantizeError when NNCF fails."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    weights = output.parent / f"{output.stem}-float-weights"
    model = _graph_with_external_weights(parent, weights)
    kept_float = sorted({*activation_products(model), *excluded})
    ignored = nncf.IgnoredScope(types=["Gather"], names=kept_float, validate=False)
    feeds = SampleFeeds(calibration.data, calibration.samples, "NNCF statistics")
    # With the weights in external data NNCF keeps them out of the copies of the graph it makes
    # (ViT-B/16: its peak 4.0 GB -> 2.8 GB) and loads them into the quantized model at the end.
    advanced = AdvancedQuantizationParameters(
        backend_params={"external_data_dir": str(weights.resolve())}
    )
    try:
        with nncf_quiet():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(feeds),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=calibration.samples,
                ignored_scope=ignored,
                advanced_parameters=advanced,
            )
    except Exception as error:  # NNCF raises its own and the runtimes' exception classes
        raise QuantizeError(
            f"NNCF quantization of {parent.name} failed: {first_line(error, 200)}",
            "try --mode dynamic, or --exclude the failing node",
        ) from error
    finally:
        shutil.rmtree(weights, ignore_errors=True)
    unsigned = activations_to_unsigned(quantized)
    del quantized.graph.value_info[:]  # see dlopt/optimize/onnx_value_info.py
    onnx.save(quantized, str(output))
    return {
        "tool": "nncf (ONNX backend)",
        "nncf_version": nncf.__version__,
        "api": "nncf.quantize",
        "nncf_model_type": "transformer",
        "quant_format": "QDQ",
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "activations_made_unsigned": unsigned,
        "kept_float_from_start": {"op_types": ["Gather"], "nodes": kept_float},
        "samples": feeds.served,
    }


def _graph_with_external_weights(parent: Path, folder: Path) -> Any:
    """The parent's graph with its weights saved as external data in `folder` (one file) and
    not loaded: what NNCF's `external_data_dir` backend parameter reads them from."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(
        onnx.load(str(parent)),
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=1024,
    )
    return onnx.load(str(folder / "model.onnx"), load_external_data=False)


def activations_to_unsigned(model: Any) -> int:
    """Rewrite, in place, every activation QuantizeLinear with an int8 zero point z (and the
    DequantizeLinear nodes reading it) to uint8 with zero point z + 128: q_u8 = q_s8 + 128 for
    the same scale, so the values are identical. Weights (constant inputs) stay int8. A
    quantized tensor read by anything but DequantizeLinear is left alone. Returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    renamed: dict[str, str] = {}  # int8 zero point -> its uint8 twin (zero points may be shared)
    changed = 0
    for quantize in [node for node in graph.node if node.op_type == "QuantizeLinear"]:
        if quantize.input[0] in initializers or len(quantize.input) < 3:
            continue  # a weight, or no zero point (uint8 by default already)
        zero_point = initializers.get(quantize.input[2])
        if zero_point is None or numpy_helper.to_array(zero_point).dtype != np.int8:
            continue
        consumers = readers.get(quantize.output[0], [])
        if not consumers or any(node.op_type != "DequantizeLinear" for node in consumers):
            continue
        name = quantize.input[2]
        if name not in renamed:
            shifted = numpy_helper.to_array(zero_point).astype(np.int16) + 128
            twin = numpy_helper.from_array(shifted.astype(np.uint8), f"{name}_uint8")
            graph.initializer.append(twin)
            renamed[name] = twin.name
        for node in [quantize, *consumers]:
            node.input[2] = renamed[name]
        changed += 1
    used = {name for node in graph.node for name in node.input}
    unused = [
        tensor for tensor in graph.initializer if tensor.name in renamed and tensor.name not in used
    ]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return changed
