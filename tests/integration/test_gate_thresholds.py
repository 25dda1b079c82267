"""Every gate threshold judged against real bench rows, passing and failing; plus what one real
gate run must get right around them: `max_iterations` honoured, reports that stay valid when a
reason carries control characters, an unwritable GITHUB_STEP_SUMMARY as a warning.

One gate run on the digits CNN (FP32, a 70%-pruned variant without fine-tuning, which is much
faster and much less accurate, and a variant whose calibration function raises an error full of
control characters) is made once; each threshold is then judged on its rows with
`dlopt.gate.judge` under a passing and a failing limit derived from the measurements.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any

import pytest

from dlopt.gate.config import Thresholds
from dlopt.gate.judge import judge_against_baseline, judge_row, latency_ratio, speedup_of
from dlopt.gate.verdicts import Verdict
from tests.integration.conftest import SAMPLES, cnn_config_head

CNN = SAMPLES / "digits_cnn"
MAX_ITERATIONS = 40
HOSTILE = "\x1b[31mcalibration\x1b[0m broke: \x00\x07\x0b ]]> <script>alert(1)</script> | a|b"
CONFIG = f"""
{cnn_config_head(evaluation_limit=64)}
[[variants]]
name = "pruned-70"
prune = {{ method = "structured", amount = 0.7, threads = 1 }}

[[variants]]
name = "hostile"
quantize = {{ mode = "static", calibration = "broken_data.py:calibration" }}

[bench]
backends = ["onnxruntime"]
batch_size = 8
threads = 1
min_time_s = 5
max_iterations = {MAX_ITERATIONS}
"""


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("thresholds")
    (folder / "broken_data.py").write_text(
        f"def calibration(batch_size=32):\n    raise RuntimeError({HOSTILE!r})\n"
    )
    (folder / "dlopt.toml").write_text(CONFIG)
    unwritable_summary = folder / "summary-is-a-folder"
    unwritable_summary.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "dlopt", "gate", str(folder / "dlopt.toml"), "-o", "out"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=folder,
        env={**os.environ, "GITHUB_STEP_SUMMARY": str(unwritable_summary)},
    )
    report = json.loads((folder / "out" / "report.json").read_text())
    rows = {row["variant"]: row["bench"] for row in report["rows"]}
    return {"result": result, "out": folder / "out", "report": report, "rows": rows}


def _judge(rows: dict[str, Any], threshold: str, limit: float, variant: str) -> Verdict:
    """Judge one threshold on a real row, as the gate pipeline does."""
    thresholds = Thresholds(**{threshold: limit})
    if threshold in ("latency_regression_max_pct", "accuracy_regression_max"):
        # Against a baseline: the other real row plays the previous run.
        baseline = rows["fp32" if variant == "pruned-70" else "pruned-70"]
        results = judge_against_baseline(
            variant, "onnxruntime", rows[variant], baseline, thresholds
        )
    else:
        results = judge_row(variant, "onnxruntime", rows[variant], thresholds, variant == "fp32")
    (result,) = results
    return result.verdict


def _ratio_high(rows: dict[str, Any], now: str, then: str) -> float:
    _, interval = latency_ratio(rows[now], rows[then])
    assert interval is not None
    return interval.high


def _drift(rows: dict[str, Any], key: str) -> float:
    return float(rows["pruned-70"]["drift"]["output"][key])


def _accuracy(rows: dict[str, Any]) -> tuple[float, float]:
    entry = rows["pruned-70"]["metrics"]["accuracy"]
    return float(entry["reference"]), float(entry["value"])


def _speedup_interval(rows: dict[str, Any]) -> tuple[float, float]:
    _, interval = speedup_of(rows["pruned-70"]["latency_ratio_to_reference"])
    assert interval is not None
    return interval.low, interval.high


MB = 2**20
# threshold -> (variant judged, passing limit, failing limit), each limit from the real rows.
Limits = Callable[[dict[str, Any]], tuple[str, float, float]]
CASES: dict[str, Limits] = {
    "accuracy_drop_max": lambda r: (
        "pruned-70",
        1.0,
        (_accuracy(r)[0] - _accuracy(r)[1]) / 2,
    ),
    "relative_accuracy_min": lambda r: (
        "pruned-70",
        0.0,
        min(1.0, 2 * _accuracy(r)[1] / _accuracy(r)[0]),
    ),
    "cosine_min": lambda r: ("pruned-70", 0.0, min(1.0, (1 + _drift(r, "cosine")) / 2)),
    "top1_agreement_min": lambda r: ("pruned-70", 0.0, 1.0),
    "kl_max": lambda r: (
        "pruned-70",
        2 * _drift(r, "softmax_kl_divergence"),
        _drift(r, "softmax_kl_divergence") / 2,
    ),
    "latency_p50_ms_max": lambda r: (
        "fp32",
        2 * r["fp32"]["latency"]["p50_ms"],
        r["fp32"]["latency"]["p50_ms"] / 2,
    ),
    "latency_p99_ms_max": lambda r: (
        "fp32",
        2 * r["fp32"]["latency"]["p99_ms"],
        r["fp32"]["latency"]["p99_ms"] / 2,
    ),
    "speedup_min": lambda r: (
        "pruned-70",
        _speedup_interval(r)[0] * 0.9,
        _speedup_interval(r)[1] * 1.1,
    ),
    "peak_memory_mb_max": lambda r: (
        "fp32",
        2 * r["fp32"]["memory"]["peak_rss_bytes"] / MB,
        r["fp32"]["memory"]["peak_rss_bytes"] / MB / 2,
    ),
    "model_size_mb_max": lambda r: (
        "fp32",
        2 * r["fp32"]["size_bytes"] / MB,
        r["fp32"]["size_bytes"] / MB / 2,
    ),
    # pruned-70 against FP32 as its baseline is much faster (passes), FP32 against pruned-70
    # much slower (fails); the limits sit on either side of the measured intervals.
    "latency_regression_max_pct": lambda r: (
        "pruned-70",
        max(0.0, (_ratio_high(r, "pruned-70", "fp32") - 1) * 100) + 10,
        0.0,
    ),
    "accuracy_regression_max": lambda r: (
        "pruned-70",
        1.0,
        (_accuracy(r)[0] - _accuracy(r)[1]) / 2,
    ),
}


def test_every_threshold_has_cases() -> None:
    assert set(CASES) == {item.name for item in dataclasses.fields(Thresholds)}


@pytest.mark.parametrize("threshold", sorted(CASES))
def test_threshold_passes_and_fails_on_real_rows(gate_run: dict[str, Any], threshold: str) -> None:
    rows = gate_run["rows"]
    variant, passing, failing = CASES[threshold](rows)

    assert _judge(rows, threshold, passing, variant) is Verdict.PASS
    if threshold == "latency_regression_max_pct":
        variant = "fp32"  # FP32 now, against the pruned model as the baseline: slower
    assert _judge(rows, threshold, failing, variant) is Verdict.FAIL


def test_the_rows_are_real_and_distinct(gate_run: dict[str, Any]) -> None:
    rows = gate_run["rows"]
    reference_accuracy, pruned_accuracy = _accuracy(rows)

    assert pruned_accuracy < reference_accuracy  # no fine-tuning: it really got worse
    assert 0 < _drift(rows, "top1_agreement") < 1 and _drift(rows, "cosine") < 1
    assert _speedup_interval(rows)[0] > 1  # and really faster
    _, slower = latency_ratio(rows["fp32"], rows["pruned-70"])
    assert slower is not None and slower.low > 1
    assert _ratio_high(rows, "pruned-70", "fp32") < 1


def test_max_iterations_stops_the_timed_runs_before_min_time(gate_run: dict[str, Any]) -> None:
    for row in gate_run["rows"].values():
        samples = row["latency"]["samples_ns"]
        assert len(samples) == MAX_ITERATIONS
        assert sum(samples) / 1e9 < 5  # min_time_s = 5 would have run on


def test_reports_stay_valid_with_control_characters_in_a_reason(gate_run: dict[str, Any]) -> None:
    out = gate_run["out"]
    recipe = next(g for g in gate_run["report"]["gates"] if g["gate"] == "recipe")
    assert "\x1b" in recipe["reason"] and "\x00" in recipe["reason"]  # kept in report.json

    junit = (out / "junit.xml").read_text()
    root = ElementTree.fromstring(junit.encode())  # strict XML 1.0

    failure = next(case for case in root.iter("testcase") if case.get("name") == "recipe")
    assert "]]>" in failure[0].get("message", "") and "<script>" in failure[0].get("message", "")
    for name in ("junit.xml", "summary.md", "report.html"):
        text = (out / name).read_text()
        assert not [char for char in text if ord(char) < 32 and char not in "\n\t"], name
        assert "broke" in text
    assert "<script>" not in (out / "report.html").read_text()
    summary = (out / "summary.md").read_text()
    line = next(line for line in summary.splitlines() if "| recipe |" in line)
    assert line.replace("\\|", "").count("|") == 9  # the reason's pipes split no cell


def test_an_unwritable_step_summary_is_a_warning_not_a_crash(gate_run: dict[str, Any]) -> None:
    result = gate_run["result"]

    assert result.returncode == 1, result.stderr  # the hostile recipe fails; not 4
    assert "warning: cannot append the summary to GITHUB_STEP_SUMMARY" in result.stderr
    assert "Traceback" not in result.stderr
