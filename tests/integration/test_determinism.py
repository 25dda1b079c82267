"""The same build twice gives the same bytes: OpenVINO IR at FP32 and INT8 (NNCF).

Both builds run in this one process, as in a gate or a notebook: OpenVINO names unnamed nodes
and models from process-wide counters, which once made the second model.xml differ from the
first (separate processes happened to agree).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from tests.integration.conftest import sample_source, sample_weights

CALIBRATION_SIZE = 16  # small: this checks reproducibility, not accuracy


def _build(source: list[str], precision: str, out: Path) -> Path:
    result = CliRunner().invoke(
        app,
        [
            "build",
            *source,
            "--backend",
            "openvino",
            "--precision",
            precision,
            "--calibration",
            "sample:digits_cnn:calibration",
            "--calibration-size",
            str(CALIBRATION_SIZE),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    ("kind", "precision"), [("onnx", "fp32"), ("onnx", "int8"), ("torch", "fp32")]
)
def test_openvino_ir_is_byte_identical_when_built_twice(
    exported_sample: Callable[[str], Path], tmp_path: Path, kind: str, precision: str
) -> None:
    if kind == "onnx":
        source = [str(exported_sample("digits_cnn") / "model.onnx")]
    else:
        source = [sample_source("digits_cnn"), "-w", str(sample_weights("digits_cnn"))]

    first = _build(source, precision, tmp_path / "first")
    second = _build(source, precision, tmp_path / "second")

    for name in ("model.xml", "model.bin"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    manifests = [json.loads((out / "model.xml.dlopt.json").read_text()) for out in (first, second)]
    assert manifests[0]["sha256"] == manifests[1]["sha256"]
    assert manifests[0]["precision"] == precision
    if precision == "int8":
        first_run, second_run = (m["recipe"]["quantization"] for m in manifests)
        assert first_run["calibration"]["samples"] == CALIBRATION_SIZE
        assert first_run["calibration"]["sha256"] == second_run["calibration"]["sha256"]
