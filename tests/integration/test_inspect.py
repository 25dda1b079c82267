"""`dlopt inspect` on real files: MACs agree across formats and with torch-pruning's counter,
quantization shows in the precision mix, leaking metadata is found."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dlopt.harness.inspect import inspect_model, side_by_side
from tests.fixtures.diff_models import masked_attention_data, write_chain, write_masked_attention
from tests.integration.conftest import sample_source, sample_weights

# The digits CNN at 1x1x32x32: 15 convolutions and a 10-way linear layer (torch-pruning's
# count for the same model is the cross-check below).
CNN_CONV_MACS = 236_371_968


def run_dlopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", *args], capture_output=True, text=True, timeout=600
    )


def test_onnx_macs_equal_torch_prunings_count_of_the_same_model(
    exported_sample: Callable[[str], Path],
) -> None:
    onnx_summary = inspect_model(str(exported_sample("digits_cnn") / "model.onnx"))
    torch_summary = inspect_model(sample_source("digits_cnn"), weights=sample_weights("digits_cnn"))

    assert torch_summary.macs_by_op_type["Conv2d"] == CNN_CONV_MACS
    assert onnx_summary.macs_by_op_type["Conv"] == CNN_CONV_MACS
    assert onnx_summary.macs_by_op_type["Gemm"] == torch_summary.macs_by_op_type["Linear"] - 10
    assert onnx_summary.macs_at == {"image": [1, 1, 32, 32]}
    assert onnx_summary.flops == 2 * onnx_summary.macs
    assert onnx_summary.precision.weights == {"fp32": onnx_summary.parameters}
    assert onnx_summary.precision.compute_ops == {"fp32": 16}
    assert onnx_summary.op_histogram["Conv"] == 15


def test_torchscript_macs_come_from_torchs_flop_counter(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    from dlopt.optimize.export import ExportOptions, export_model

    export_model(
        sample_source("digits_cnn"),
        tmp_path,
        weights=sample_weights("digits_cnn"),
        options=ExportOptions(formats=("torchscript",)),
    )

    summary = inspect_model(str(tmp_path / "model.ts"))

    assert summary.format == "torchscript"
    assert summary.macs_by_op_type["aten._convolution"] == CNN_CONV_MACS
    assert summary.op_histogram["aten::_convolution"] == 15


def test_static_int8_shows_in_the_precision_mix_and_side_by_side(tmp_path: Path) -> None:
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    reference = write_masked_attention(tmp_path / "attention.onnx")
    data = masked_attention_data(tmp_path / "data.npz")
    # ORT's QDQ quantize_static as made (model_type other, no budget): every weight INT8, two
    # INT8 products. (The transformer scheme's SmoothQuant adds float scale constants; over
    # the default budget, static's fallback may hand over to dynamic INT8.)
    options = QuantizeOptions(
        mode="static", calibration=str(data), model_type="other", max_drift=("none",)
    )
    quantized = quantize_model(str(reference), tmp_path / "int8", options).path

    before, after = inspect_model(str(reference)), inspect_model(str(quantized))
    changes = {row["what"]: row for row in side_by_side(before, after)}

    assert before.precision.weights == {"fp32": 16 * 16 + 16 * 4}
    assert after.precision.weights.get("int8") == 16 * 16 + 16 * 4
    assert after.precision.compute_ops == {"int8": 2}
    assert after.precision.quantize_pairs > 0
    assert after.macs == before.macs == 8 * 16 * 16 + 8 * 16 * 4  # batch 1 at the example
    assert changes["weights in fp32"] == {
        "what": "weights in fp32",
        "first": 320,
        "second": 0,
        "change": 0.0,
    }
    assert changes["weights in int8"]["second"] == 320
    assert changes["compute ops in int8"]["second"] == 2


def test_nncf_ir_counts_like_its_onnx_parent(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    from dlopt.optimize.build import BuildOptions, build_engine

    onnx_path = exported_sample("digits_cnn") / "model.onnx"
    options = BuildOptions(
        "openvino", "int8", calibration="sample:digits_cnn:calibration", calibration_size=32
    )
    ir = build_engine(str(onnx_path), tmp_path, options).path

    summary = inspect_model(str(ir))

    assert summary.format == "openvino_ir"
    assert summary.macs_by_op_type["Convolution"] == CNN_CONV_MACS
    assert summary.precision.compute_ops == {"int8": 16}
    assert summary.precision.quantize_pairs >= 15
    assert summary.precision.weights["int8"] > 0.99 * summary.parameters
    assert summary.producer is not None and "NNCF" in summary.producer


def test_paths_in_node_metadata_are_reported_not_removed(tmp_path: Path) -> None:
    import onnx

    model_path = write_chain(tmp_path / "chain.onnx")
    model = onnx.load(str(model_path))
    for node in model.graph.node:
        entry = node.metadata_props.add()
        entry.key = "pkg.torch.onnx.stack_trace"
        entry.value = 'File "/home/alice/work/model.py", line 12, in forward\n    return x @ w'
    onnx.save(model, str(model_path))

    summary = inspect_model(str(model_path))

    leak = summary.leaks[0]
    assert leak["where"] == "node metadata pkg.torch.onnx.stack_trace"
    assert leak["count"] == len(model.graph.node)
    assert leak["example"] == "/home/alice/work/model.py"
    assert set(leak["kinds"]) == {"absolute path", "source code"}
    assert onnx.load(str(model_path)).graph.node[0].metadata_props  # left in place


def test_cli_json_with_two_models_lists_the_differences(tmp_path: Path) -> None:
    first = write_chain(tmp_path / "a.onnx")
    second = write_chain(tmp_path / "b.onnx", perturb=1)

    result = run_dlopt("inspect", str(first), str(second), "--json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [m["parameters"] for m in data["models"]] == [4 * 16 * 16] * 2
    assert data["models"][0]["macs"] == 4 * 16 * 16
    assert data["differences"] == []  # same shapes, precisions and size: nothing to show


@pytest.mark.parametrize("content", [b"", b"\x08\x07not onnx"])
def test_unreadable_model_exits_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)

    result = run_dlopt("inspect", str(path))

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and str(path) in lines[0]
