"""Report renderers: every gate appears, failures carry value and threshold, strings escaped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
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


# What a user's data function can put in a reason: colour codes, NUL and other C0 controls,
# the end of a CDATA section, HTML, Markdown pipes, a lone surrogate.
CONTROLS = "\x1b[31mboom\x1b[0m \x00 \x07 \x08 \x0b \x0c \x1b \x1f \x7f \ud800 ]]> <b>|</b> a|b"


def hostile_report() -> dict[str, Any]:
    report = sample_report()
    for gate in report["gates"]:
        gate["reason"] = CONTROLS
    report["gates"][0]["variant"] = "v\x00|<script>"
    report["rows"][0]["reason"] = CONTROLS
    report["rows"][0]["status"] = "failed"
    report["config"] = "dlopt\x1b.toml"
    return report


def test_every_renderer_survives_control_characters(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ElementTree

    report = hostile_report()

    junit = render_junit(report)
    markdown = render_markdown(report)
    html = render_html(report)

    root = ElementTree.fromstring(junit.encode())  # a strict XML 1.0 parser
    assert len(root.findall(".//testcase")) == 4
    failure = root.find(".//failure")
    assert failure is not None and "boom" in failure.get("message", "")
    (tmp_path / "junit.xml").write_text(junit)
    assert (
        len([case for suite in JUnitXml.fromfile(str(tmp_path / "junit.xml")) for case in suite])
        == 4
    )
    forbidden = [chr(code) for code in [*range(0, 9), *range(11, 32), 0x7F]] + ["\ud800"]
    for text in (junit, markdown, html):
        assert not [char for char in forbidden if char in text]
        assert "<script>" not in text and "<b>" not in text
        assert "boom" in text
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    cells = {line.replace("\\|", "").count("|") for line in table[:5]}  # header, 4 gates
    assert cells == {9}  # 8 columns: no pipe in a reason splits a cell
    assert "\\x00" in markdown  # shown, not dropped silently


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (-0.008333, 0.016667, "-0.008–0.017"),
        (2.1, 2.6, "2.10–2.60"),
        (0.93451, 1.2345, "0.93–1.23"),
        (12.3, 15.7, "12.3–15.7"),
        (120.0, 160.0, "120–160"),
        (0.99991, 0.99996, "0.999910–0.999960"),
        (-0.0001, 0.02, "0.000–0.020"),
        (1.5, 1.5, "1.5–1.5"),
        (None, 2.0, "—–2"),
    ],
)
def test_intervals_have_the_digits_their_width_needs(
    low: float | None, high: float, expected: str
) -> None:
    from dlopt.report.format import fmt_bounds, fmt_interval

    assert fmt_bounds(low, high) == expected
    assert fmt_interval({"low": low, "high": high}) == "[" + expected.replace("–", ", ") + "]"


def test_the_verdict_table_fits_80_columns_without_breaking_a_number() -> None:
    from rich.console import Console

    from dlopt.commands._tables import verdict_table

    gates = [
        {
            "variant": name,
            "backend": "onnxruntime",
            "gate": gate,
            "verdict": verdict,
            "measured": 0.004167,
            "threshold": 0.01,
            "interval": {"low": -0.008333, "high": 0.016667},
            "reason": "[red]not markup[/red] \x1b[31m",
        }
        for name in ("int8-static", "a-long-variant-name-" + "x" * 44)
        for gate, verdict in (
            ("accuracy_drop_max", "pass"),
            ("latency_regression_max_pct", "inconclusive"),
        )
    ]
    console = Console(width=80, record=True, force_terminal=False)

    console.print(verdict_table({"verdict": "inconclusive", "exit_code": 3, "gates": gates}))

    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("   latency_regression_max_pct")]
    assert len(rows) == 2 and all("-0.008–0.017" in row and "inconclusive" in row for row in rows)
    assert any("[red]not markup[/red]" in line for line in lines)
    assert not any("\x1b" in line for line in lines)
