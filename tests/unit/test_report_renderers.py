"""Report renderers: every gate appears, failures carry value and threshold, strings escaped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped

from dlopt.report.html import pareto_front, render_html
from dlopt.report.junit import render_junit
from dlopt.report.markdown import render_markdown

HOSTILE = "<script>alert(1)</script>|x"


def sample_report() -> dict[str, Any]:
    row = {
        "variant": HOSTILE,
        "backend": "onnxruntime",
        "status": "ok",
        "reason": "",
        "latency_ms": {"p50": 1.5, "p99": 2.5, "samples": [1.4, 1.5, 1.6, 2.5]},
        "speedup": {"ratio": 2.2, "interval": {"low": 2.0, "high": 2.4}},
        "metrics": {"accuracy": 0.97},
        "drift": {"cosine": 0.999},
        "peak_rss_mb": 210.0,
        "model_size_mb": 1.2,
    }
    gates = [
        {
            "variant": HOSTILE,
            "backend": "onnxruntime",
            "gate": "speedup_min",
            "verdict": "pass",
            "measured": 2.2,
            "threshold": 1.5,
            "interval": {"low": 2.0, "high": 2.4},
            "reason": "",
        },
        {
            "variant": "fp32",
            "backend": "openvino",
            "gate": "cosine_min",
            "verdict": "fail",
            "measured": 0.91,
            "threshold": 0.99,
            "interval": None,
            "reason": "0.91 < 0.99",
        },
        {
            "variant": "fp32",
            "backend": "onnxruntime",
            "gate": "latency_regression_max_pct",
            "verdict": "inconclusive",
            "measured": 1.08,
            "threshold": 1.1,
            "interval": {"low": 1.0, "high": 1.2},
            "reason": "straddles",
        },
        {
            "variant": "fp32",
            "backend": "tensorrt",
            "gate": "*",
            "verdict": "skipped",
            "measured": None,
            "threshold": None,
            "interval": None,
            "reason": "no CUDA device",
        },
    ]
    return {
        "schema_version": 1,
        "verdict": "fail",
        "exit_code": 1,
        "config": "dlopt.toml",
        "created_utc": "2026-11-24T00:00:00+00:00",
        "rows": [row],
        "gates": gates,
    }


def test_junit_has_one_case_per_gate_with_value_and_threshold(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(render_junit(sample_report()))

    suites = JUnitXml.fromfile(str(path))
    cases = [case for suite in suites for case in suite]

    assert len(cases) == 4
    outcomes = {case.name: [type(r) for r in case.result] for case in cases}
    assert outcomes["cosine_min"] == [Failure]
    assert outcomes["latency_regression_max_pct"] == [Error]
    assert outcomes["*"] == [Skipped]
    assert outcomes["speedup_min"] == []
    failure = next(case for case in cases if case.name == "cosine_min").result[0]
    assert "measured 0.91" in failure.message and "threshold 0.99" in failure.message


def test_markdown_names_the_failing_gate_and_escapes() -> None:
    text = render_markdown(sample_report())

    assert text.startswith("# dlopt gate: ❌ FAIL")
    assert "| fp32 | openvino | cosine_min | 0.91 | 0.99 |" in text
    assert "<script>" not in text and "&lt;script&gt;" in text and "\\|x" in text


def test_html_escapes_strings_and_embeds_plots() -> None:
    text = render_html(sample_report())

    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "id='verdict'" in text and "FAIL" in text
    assert text.count("<svg") == 3  # scatter, latency distribution, memory


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.94), (4.0, 0.99), (0.5, 0.80)]

    assert pareto_front(points) == [(0.5, 0.80), (1.0, 0.90), (2.0, 0.95), (4.0, 0.99)]
