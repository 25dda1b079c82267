"""`--mode auto` on the text sample: static (NNCF's transformer scheme), dynamic after
SmoothQuant and dynamic INT8 all tried, timed against FP32 interleaved, the fastest within
budget kept and the choice recorded; and static INT8 whose budget needs a fallback is compared
with the dynamic candidates before it is written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.optimize.quantize import QuantizeOptions, quantize_model

CALIBRATION = "sample:text_transformer:calibration"
EVALUATION = "sample:text_transformer:evaluation"
STATIC, DYNAMIC = "static INT8 (NNCF transformer scheme)", "dynamic INT8"
SMOOTHQUANT_DYNAMIC = "dynamic INT8 after SmoothQuant (NNCF scales)"


def manifest_of(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name + ".dlopt.json").read_text())


def test_auto_is_the_default_and_keeps_the_fastest_candidate_within_budget(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("text_transformer") / "model.onnx"
    out = tmp_path / "auto"

    result = CliRunner().invoke(
        app,
        [
            "quantize", str(fp32), "--calibration", CALIBRATION, "--calibration-size", "64",
            "--eval", EVALUATION, "--eval-size", "100", "--no-speed-check", "-o", str(out),
        ],
        env={"COLUMNS": "200"},
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = manifest_of(out / "model.onnx")
    auto = manifest["recipe"]["auto"]
    tried = {entry["candidate"]: entry for entry in auto["tried"]}
    assert list(tried) == [STATIC, SMOOTHQUANT_DYNAMIC, DYNAMIC]
    for entry in tried.values():
        assert entry["status"] == "within budget" and entry["cosine"] >= 0.99
        speed = entry["speedup"]
        assert speed["low"] <= speed["ratio"] <= speed["high"] and speed["rounds"] >= 10
    fastest = max(tried, key=lambda name: tried[name]["speedup"]["ratio"])
    assert auto["winner"] == fastest and "fastest within budget" in auto["why"]
    assert manifest["recipe"]["mode"] == tried[fastest]["mode"]
    assert manifest["checks"]["drift"]["within_budget"] is True
    assert auto["timing"]["threads"] == 1 and auto["timing"]["batch"] == 1
    assert "--mode auto" in result.stdout and f"chose {fastest}" in result.stdout


def test_auto_never_keeps_a_candidate_over_the_budget(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("text_transformer") / "model.onnx"
    options = QuantizeOptions(
        calibration=CALIBRATION,
        calibration_size=64,
        evaluation=EVALUATION,
        evaluation_size=100,
        max_drift=("sqnr_db=30",),  # dynamic gave 39.5 dB here, static 23.5 dB before fallback
    )

    result = quantize_model(str(fp32), tmp_path / "q", options)

    manifest = manifest_of(result.path)
    auto = manifest["recipe"]["auto"]
    assert manifest["checks"]["drift"]["sqnr_db"] >= 30
    for entry in auto["tried"]:
        if entry["status"] == "within budget":
            assert entry["sqnr_db"] >= 30, entry
        else:
            assert "sqnr_db >= 30" in entry["reason"], entry
    static = next(entry for entry in auto["tried"] if entry["candidate"] == STATIC)
    # Over budget as NNCF made it: its bounded fallback removed activation quantizers.
    assert static["status"] == "over budget" or static["kept_float_for_budget"] > 0


def test_static_that_needs_its_fallback_is_compared_with_dynamic(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("text_transformer") / "model.onnx"
    options = QuantizeOptions(
        mode="static",
        calibration=CALIBRATION,
        calibration_size=64,
        evaluation=EVALUATION,
        evaluation_size=100,
        max_drift=("sqnr_db=26",),
    )

    result = quantize_model(str(fp32), tmp_path / "q", options)

    recipe = manifest_of(result.path)["recipe"]
    attempts = manifest_of(result.path)["checks"]["drift"]["attempts"]
    assert len(attempts) <= 5  # the first try and at most four fallback steps
    if recipe["mode"] == "static" and not recipe["kept_float_for_budget"]:
        assert "auto" not in recipe  # NNCF's scheme alone met it: nothing to compare
    else:
        tried = {entry["candidate"] for entry in recipe["auto"]["tried"]}
        assert tried == {"static", "dynamic after SmoothQuant", "dynamic"}
        winner = recipe["auto"]["winner"]
        speeds = {e["candidate"]: e["speedup"]["ratio"] for e in recipe["auto"]["tried"]}
        assert speeds[winner] == max(speeds.values())


def test_auto_on_openvino_tries_the_precision_hints_the_cpu_has(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    from dlopt.optimize.quantize.openvino import cpu_has_bf16

    fp32 = exported_sample("digits_cnn") / "model.onnx"
    options = QuantizeOptions(
        target="openvino",
        calibration="sample:digits_cnn:calibration",
        calibration_size=32,
        evaluation="sample:digits_cnn:evaluation",
        evaluation_size=64,
    )

    result = quantize_model(str(fp32), tmp_path / "ov", options)

    manifest = manifest_of(result.path)
    auto = manifest["recipe"]["auto"]
    names = [entry["candidate"] for entry in auto["tried"]]
    expected = ["NNCF INT8 IR, f32 hint"] + (["NNCF INT8 IR, bf16 hint"] if cpu_has_bf16() else [])
    assert names == expected
    hint = manifest["recipe"]["compile_properties"]["INFERENCE_PRECISION_HINT"]
    assert auto["winner"].endswith(f"{hint} hint")
    assert manifest["format"] == "openvino_ir" and manifest["recipe"]["runtime"] == "openvino"
    assert auto["timing"]["against"] == "FP32 parent on openvino"
