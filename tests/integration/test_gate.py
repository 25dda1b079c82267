"""`dlopt gate` end to end on the digits CNN: verdicts, exit codes and the four reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from tests.integration.conftest import SAMPLES, cnn_config_head

CNN = SAMPLES / "digits_cnn"
BASE_CONFIG = f"""
{cnn_config_head(evaluation_limit=96)}
[bench]
backends = ["onnxruntime", "openvino", "tensorrt"]
optional_backends = ["tensorrt"]
min_time_s = 0.3

[gate]
model_size_mb_max = 10
peak_memory_mb_max = 2000
"""


def run_gate(
    tmp_path: Path, config_text: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "dlopt.toml"
    config.write_text(config_text)
    out = tmp_path / "reports"
    result = subprocess.run(
        [sys.executable, "-m", "dlopt", "gate", str(config), "-o", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, out


def test_passing_config_exits_0_and_writes_four_reports(tmp_path: Path) -> None:
    result, out = run_gate(tmp_path, BASE_CONFIG)

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "pass" and report["exit_code"] == 0
    verdicts = {(g["backend"], g["gate"]): g["verdict"] for g in report["gates"]}
    assert verdicts[("onnxruntime", "model_size_mb_max")] == "pass"
    assert verdicts[("tensorrt", "*")] == "skipped"
    rows = {(r["variant"], r["backend"]) for r in report["rows"]}
    assert rows == {("fp32", "onnxruntime"), ("fp32", "openvino")}
    assert all(len(r["bench"]["latency"]["samples_ns"]) > 5 for r in report["rows"])
    assert report["variants"][0]["manifest_chain"][0]["format"] == "onnx"
    for name in ("summary.md", "junit.xml", "report.html"):
        assert (out / name).stat().st_size > 0
    # Nothing but FP32 to ship: the recommendation says so for each backend benched.
    assert [(r["backend"], r["status"], r["variant"]) for r in report["recommendation"]] == [
        ("onnxruntime", "ship", "fp32"),
        ("openvino", "ship", "fp32"),
    ]
    assert report["diagnoses"] == []


def test_tightened_threshold_exits_1_and_every_report_names_the_gate(tmp_path: Path) -> None:
    result, out = run_gate(
        tmp_path, BASE_CONFIG.replace("model_size_mb_max = 10", "model_size_mb_max = 1")
    )

    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    failing = [g for g in report["gates"] if g["verdict"] == "fail"]
    assert {g["gate"] for g in failing} == {"model_size_mb_max"}
    assert failing[0]["threshold"] == 1 and failing[0]["measured"] > 5
    assert "| model_size_mb_max |" in (out / "summary.md").read_text()
    assert "model_size_mb_max" in (out / "report.html").read_text()
    cases = [case for suite in JUnitXml.fromfile(str(out / "junit.xml")) for case in suite]
    failed_cases = [c for c in cases if any(isinstance(r, Failure) for r in c.result)]
    assert {c.name for c in failed_cases} == {"model_size_mb_max"}
    assert "threshold 1" in failed_cases[0].result[0].message


def test_required_backend_unavailable_fails_closed(tmp_path: Path) -> None:
    config = BASE_CONFIG.replace('optional_backends = ["tensorrt"]', "optional_backends = []")

    result, out = run_gate(tmp_path, config)

    assert result.returncode == 1
    report = json.loads((out / "report.json").read_text())
    failing = [g for g in report["gates"] if g["verdict"] == "fail"]
    assert [g["backend"] for g in failing] == ["tensorrt"]
    assert "unavailable" in failing[0]["reason"]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (("min_time_s = 0.3", "min_time_s = -1"), "bench.min_time_s = -1 is out of range"),
        (("model_size_mb_max = 10", "model_size_mb = 10"), "unknown key gate.model_size_mb"),
        (("[bench]", "[bench"), "not valid TOML"),
    ],
)
def test_broken_config_exits_2_with_one_line(
    tmp_path: Path, edit: tuple[str, str], fragment: str
) -> None:
    result, out = run_gate(tmp_path, BASE_CONFIG.replace(*edit))

    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0]
    assert not out.exists()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    result, out = run_gate(tmp_path, BASE_CONFIG)
    assert result.returncode == 0
    url = (out / "report.html").as_uri()
    flags = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]

    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    shot = tmp_path / "report.png"
    screenshot = subprocess.run(
        [*flags, "--window-size=1200,1600", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert '<table id="gates">' in dom.stdout and "Verdict: <strong>PASS</strong>" in dom.stdout
    console = [
        line
        for line in dom.stderr.splitlines() + screenshot.stderr.splitlines()
        if "CONSOLE" in line
    ]
    assert console == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_crashing_variant_fails_closed_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "broken_data.py").write_text(
        "def calibration(batch_size=32):\n    raise RuntimeError('calibration reader blew up')\n"
    )
    calibration = f"{tmp_path / 'broken_data.py'}:calibration"
    config = BASE_CONFIG + (
        '\n[[variants]]\nname = "ov-int8"\n'
        f'build = {{ backend = "openvino", precision = "int8", calibration = "{calibration}" }}\n'
    )

    result, out = run_gate(tmp_path, config)

    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    recipe = [g for g in report["gates"] if g["gate"] == "recipe"]
    assert [g["verdict"] for g in recipe] == ["fail"]
    assert "blew up" in recipe[0]["reason"]
    assert {(r["variant"], r["backend"]) for r in report["rows"]} == {
        ("fp32", "onnxruntime"),
        ("fp32", "openvino"),
    }


def test_a_noisy_latency_regression_gate_is_inconclusive_exit_3(tmp_path: Path) -> None:
    # A baseline whose timings are bimodal (half at 0.1x, half at 10x this machine's own
    # samples) has no stable median: the interval of now/then spans about [0.1, 10] times the
    # machine's drift between the runs, so a 10% regression limit can be neither passed nor
    # failed. (At 0.5x/2x, a second run 2x faster than the first, as when a parallel test
    # slowed the first, passed: the spread must exceed what these machines drift.)
    first, first_out = run_gate(tmp_path / "first", BASE_CONFIG)
    assert first.returncode == 0, first.stdout + first.stderr
    baseline = json.loads((first_out / "report.json").read_text())
    timed = [row["bench"] for row in baseline["rows"] if row["status"] == "ok"]
    assert timed
    for row in timed:
        samples = row["latency"]["samples_ns"]
        half = len(samples) // 2
        row["latency"]["samples_ns"] = [s // 10 for s in samples[:half]] + [
            s * 10 for s in samples[half : 2 * half]
        ]
    baseline_path = tmp_path / "baseline.json"
    baseline_path.write_text(json.dumps(baseline))
    config = BASE_CONFIG.replace("[gate]\n", "[gate]\nlatency_regression_max_pct = 10\n")

    result, out = run_gate(tmp_path / "second", config, "--baseline", str(baseline_path))

    assert result.returncode == 3, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    gates = [g for g in report["gates"] if g["gate"] == "latency_regression_max_pct"]
    assert gates and {g["verdict"] for g in gates} == {"inconclusive"}
    for gate in gates:
        assert gate["interval"]["low"] < 1.1 < gate["interval"]["high"]
        assert "rerun" in gate["reason"]


def test_a_failed_accuracy_gate_names_the_culprit_layers_and_what_to_ship(tmp_path: Path) -> None:
    # Static INT8 of the CNN reaches cosine 0.9999 against FP32: a limit of 0.999999 fails it.
    config = f"""
{cnn_config_head(evaluation_limit=96, calibration=True)}
[[variants]]
name = "int8-static"
quantize = {{ mode = "static", target = "onnxruntime" }}

[bench]
backends = ["onnxruntime"]
min_time_s = 0.3

[gate]
cosine_min = 0.999999
"""

    result, out = run_gate(tmp_path, config)

    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    [diagnosis] = report["diagnoses"]
    assert (diagnosis["variant"], diagnosis["backend"]) == ("int8-static", "onnxruntime")
    assert diagnosis["gates"] == ["cosine_min"] and diagnosis["samples"] == 64
    worst = diagnosis["worst"]
    assert worst and all(layer["cosine"] < 1 for layer in worst)
    assert worst[0]["op_type"] in ("Conv", "Gemm", "Relu", "Add")
    suggestion = diagnosis["suggestion"]
    assert suggestion["exclude"] and "return these" in suggestion["text"]
    assert suggestion["max_drift"] == ["cosine=0.999999"]
    assert 0 < suggestion["speedup_kept"]["share"] <= 1
    [entry] = report["recommendation"]
    assert (entry["status"], entry["variant"]) == ("ship", "fp32")
    assert entry["nearest_miss"]["variant"] == "int8-static"
    assert entry["nearest_miss"]["culprits"] == [layer["layer"] for layer in worst]
    summary = (out / "summary.md").read_text()
    assert [line for line in summary.splitlines() if line.startswith("## ")][:2] == [
        "## Recommendation",
        "## Why accuracy gates failed",
    ]
    html_text = (out / "report.html").read_text()
    assert html_text.index("id='recommendation'") < html_text.index("id='gates'")
    assert worst[0]["layer"] in (out / "junit.xml").read_text()
    assert "ship on onnxruntime: fp32" in " ".join(result.stdout.split())
