"""Dynamic INT8 after SmoothQuant (`--mode auto`'s third ONNX Runtime candidate on graphs with
attention), on the text sample: SmoothQuant's scales move into the weights without changing
what the float model computes, and the candidate quantizes that model dynamically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from dlopt.optimize.quantize.calibration import open_calibration
from dlopt.optimize.quantize.onnx_nncf import nncf_transformer_int8
from dlopt.optimize.quantize.options import QuantizeOptions
from dlopt.optimize.quantize.ort_job import OrtJob
from dlopt.optimize.quantize.smoothquant_dynamic import (
    SMOOTHING_MARK,
    smoothed_float_model,
    smoothquant_dynamic_candidate,
)
from dlopt.specs import TensorSpec

CALIBRATION = "sample:text_transformer:calibration"
EVALUATION = "sample:text_transformer:evaluation"


def specs_of(model: Path) -> list[TensorSpec]:
    manifest = json.loads(model.with_name(model.name + ".dlopt.json").read_text())
    return [TensorSpec.from_dict(item) for item in manifest["inputs"]]


def outputs(model: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def test_smoothquant_scales_move_into_the_weights_without_changing_the_float_model(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("text_transformer") / "model.onnx"
    calibration = open_calibration(CALIBRATION, specs_of(fp32), 32, 0)
    nncf_transformer_int8(fp32, tmp_path / "nncf.onnx", calibration, [])
    # The FP32 weights it handed NNCF as external data are gone; the model holds its own.
    assert [path.name for path in tmp_path.iterdir()] == ["nncf.onnx"]
    as_written = onnx.load(str(tmp_path / "nncf.onnx"), load_external_data=False)
    uses = onnx.external_data_helper.uses_external_data
    assert not [tensor.name for tensor in as_written.graph.initializer if uses(tensor)]

    muls = smoothed_float_model(tmp_path / "nncf.onnx", fp32, tmp_path / "smoothed.onnx")

    graph = onnx.load(str(tmp_path / "smoothed.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert muls > 0
    assert sum(n.op_type == "Mul" and SMOOTHING_MARK in n.name for n in graph.node) == muls
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    feeds = [batch.inputs for batch in open_calibration(EVALUATION, specs_of(fp32), 16, 0).data]
    expected, smoothed = outputs(fp32, feeds), outputs(tmp_path / "smoothed.onnx", feeds)
    # The Muls scale activations by up to ~100x: unscaled weights would be far off. What is
    # left is NNCF's bias correction for INT8 weights.
    error = np.linalg.norm(smoothed - expected) / np.linalg.norm(expected)
    assert error < 0.005, error


def test_the_candidate_quantizes_the_smoothed_model_dynamically_within_budget(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("text_transformer") / "model.onnx"
    options = QuantizeOptions(
        calibration=CALIBRATION, calibration_size=32, evaluation=EVALUATION, evaluation_size=64
    )
    job = OrtJob(fp32, specs_of(fp32), tmp_path, options, lambda message: None)

    staged = smoothquant_dynamic_candidate(job, tmp_path / "candidate")

    graph = onnx.load(str(staged.files[-1])).graph
    ops = {node.op_type for node in graph.node}
    assert "DynamicQuantizeLinear" in ops and "MatMulInteger" in ops
    assert "QuantizeLinear" not in ops  # no static activation quantizer left
    smoothing = [n for n in graph.node if n.op_type == "Mul" and SMOOTHING_MARK in n.name]
    assert len(smoothing) == staged.recipe["smoothquant"]["muls"] > 0
    assert staged.recipe["mode"] == "dynamic" and staged.recipe["calibration"]["samples"] == 32
    assert staged.drift["within_budget"] is True and staged.drift["cosine"] >= 0.99
    assert sorted(path.name for path in (tmp_path / "candidate").iterdir()) == ["model.onnx"]


def test_auto_goes_on_without_the_candidate_when_its_graph_edit_fails(
    exported_sample: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph the SmoothQuant edit cannot follow fails this candidate alone."""
    from dlopt.optimize.quantize import quantize_model, smoothquant_dynamic

    def cannot_follow(*args: object) -> int:
        raise ValueError("logits is a graph output")

    monkeypatch.setattr(smoothquant_dynamic, "smoothed_float_model", cannot_follow)
    fp32 = exported_sample("text_transformer") / "model.onnx"
    options = QuantizeOptions(
        calibration=CALIBRATION, calibration_size=32, evaluation=EVALUATION, evaluation_size=64
    )

    result = quantize_model(str(fp32), tmp_path / "q", options)

    tried = {entry["candidate"]: entry for entry in result.details["auto"]["tried"]}
    failed = tried["dynamic INT8 after SmoothQuant (NNCF scales)"]
    assert failed["status"] == "failed" and "logits is a graph output" in failed["reason"]
    assert result.details["auto"]["winner"] in {
        "static INT8 (NNCF transformer scheme)",
        "dynamic INT8",
    }
