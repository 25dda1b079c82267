"""`dlopt diff` on real runtimes: it must point at the layer that was broken, see nothing on
the same model across backends, and match IR layers to ONNX ones by name."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dlopt.harness.layerdiff import DiffOptions, ModelMismatchError, diff_models
from tests.fixtures.diff_models import (
    chain_data,
    masked_attention_data,
    write_chain,
    write_masked_attention,
)
from tests.integration.conftest import SAMPLES

CNN_DATA = "sample:digits_cnn"


def run_dlopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("broken", [1, 2, 3])
def test_a_perturbed_layer_is_the_first_beyond_tolerance_and_the_worst(
    tmp_path: Path, broken: int
) -> None:
    reference = write_chain(tmp_path / "reference.onnx")
    candidate = write_chain(tmp_path / "candidate.onnx", perturb=broken)
    data = chain_data(tmp_path / "data.npz")

    result = diff_models(str(reference), str(candidate), str(data), DiffOptions())

    by_layer = {layer.layer: layer for layer in result.layers}
    assert len(result.layers) == 7  # 4 MatMuls and 3 ReLUs, all matched
    for earlier in range(broken):
        assert by_layer[f"layer{earlier}"].drift.max_abs_error == 0
    assert result.first_beyond_tolerance is not None
    assert result.first_beyond_tolerance.layer == f"layer{broken}"
    assert result.worst[0].layer == f"layer{broken}"
    assert by_layer[f"layer{broken}"].drift.cosine < 0.99


def test_static_int8_breaking_a_masked_softmax_is_traced_to_the_mask_add(tmp_path: Path) -> None:
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    reference = write_masked_attention(tmp_path / "attention.onnx")
    data = masked_attention_data(tmp_path / "data.npz")
    # No budget: the point is a model whose masked softmax INT8 broke (the default budget
    # would return the culprits to float and leave nothing to find). ORT's plain
    # quantize_static (model_type other): the transformer scheme keeps the mask Add float.
    options = QuantizeOptions(
        mode="static", calibration=str(data), max_drift=("none",), model_type="other"
    )
    quantized = quantize_model(str(reference), tmp_path / "int8", options).path

    result = diff_models(str(reference), str(quantized), str(data), DiffOptions())

    first, worst = result.first_beyond_tolerance, result.worst[0]
    assert first is not None and first.layer == "attention" and first.op_type == "Softmax"
    assert worst.layer == "attention" and worst.drift.cosine < 0.9
    assert [item["layer"] for item in worst.quantized_inputs] == ["mask_add"]
    assert worst.keep_float == ["mask_add", "attention"]
    # The Add's own output is still close to FP32 over the whole tensor: the -10000 entries
    # dominate it. Only the error the softmax adds gives it away.
    mask_add = next(layer for layer in result.layers if layer.layer == "mask_add")
    assert mask_add.drift.cosine > 0.9999


def test_the_same_fp32_model_on_two_backends_agrees_at_every_layer(
    exported_sample: Callable[[str], Path],
) -> None:
    model = str(exported_sample("digits_cnn") / "model.onnx")

    result = diff_models(
        model, model, CNN_DATA, DiffOptions(candidate_backend="openvino", samples=64)
    )

    assert (
        result.candidate["backend"] == "openvino" and result.reference["backend"] == "onnxruntime"
    )
    assert result.coverage["Conv"] == [15, 15]
    assert len(result.layers) == sum(total for _, total in result.coverage.values())
    assert min(layer.drift.cosine for layer in result.layers) >= 0.9999
    assert result.first_beyond_tolerance is None


def test_fp32_onnx_against_an_nncf_int8_ir_matches_the_convolutions_by_name(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    from dlopt.optimize.build import BuildOptions, build_engine

    onnx_path = exported_sample("digits_cnn") / "model.onnx"
    options = BuildOptions(
        "openvino", "int8", calibration="sample:digits_cnn:calibration", calibration_size=64
    )
    ir = build_engine(str(onnx_path), tmp_path / "ir", options).path

    result = diff_models(str(onnx_path), str(ir), CNN_DATA, DiffOptions(samples=64))

    found, total = result.coverage["Conv"]
    assert total == 15 and found / total >= 0.9
    assert result.candidate["backend"] == "openvino"
    convolutions = [layer for layer in result.layers if layer.op_type == "Conv"]
    # NNCF quantizes every convolution's input: the diff sees the FakeQuantize in front.
    assert all(layer.quantized_inputs for layer in convolutions)
    assert 0.99 < min(layer.drift.cosine for layer in convolutions) < 1.0


def test_cli_prints_the_culprit_and_writes_json(tmp_path: Path) -> None:
    reference = write_chain(tmp_path / "reference.onnx")
    candidate = write_chain(tmp_path / "candidate.onnx", perturb=2)
    data = chain_data(tmp_path / "data.npz")
    out = tmp_path / "diff.json"

    result = run_dlopt(
        "diff", str(reference), str(candidate), "--data", str(data), "--json", str(out)
    )

    assert result.returncode == 0, result.stderr
    assert "first layer beyond cosine 0.99: #4 layer2 (MatMul)" in " ".join(result.stdout.split())
    report = json.loads(out.read_text())
    assert report["first_beyond_tolerance"]["layer"] == "layer2"
    assert [layer["layer"] for layer in report["layers"]][:5] == [
        "layer0",
        "relu0",
        "layer1",
        "relu1",
        "layer2",
    ]
    assert report["samples"] == 64 and report["matched_layers"] == 7


def test_models_with_no_layer_in_common_exit_2(tmp_path: Path) -> None:
    import onnx

    reference = write_chain(tmp_path / "reference.onnx")
    renamed = onnx.load(str(reference))
    for node in renamed.graph.node:
        node.output[0] = node.output[0] if node.output[0] == "y" else f"other_{node.output[0]}"
        node.input[0] = node.input[0] if node.input[0] == "x" else f"other_{node.input[0]}"
    renamed.graph.output[0].name = "z"
    renamed.graph.node[-1].output[0] = "z"
    onnx.save(renamed, str(tmp_path / "renamed.onnx"))

    with pytest.raises(ModelMismatchError, match="no layer"):
        diff_models(str(reference), str(tmp_path / "renamed.onnx"), None, DiffOptions())


@pytest.mark.parametrize(
    ("second", "fragment"),
    [
        ("attention.onnx", "takes inputs"),
        ("broken.onnx", "not a readable ONNX model"),
        (f"{SAMPLES / 'digits_cnn' / 'model.py'}:create_model", "Export it first"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, second: str, fragment: str) -> None:
    reference = write_chain(tmp_path / "reference.onnx")
    write_masked_attention(tmp_path / "attention.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage")
    candidate = second if ":" in second else str(tmp_path / second)

    result = run_dlopt("diff", str(reference), candidate)

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and fragment in lines[0]
