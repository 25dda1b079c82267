"""The explaining parts of the reports: the recommendation first, the culprit layers of a
failed accuracy gate, gates grouped by variant, and a Pareto front that is drawn."""

from __future__ import annotations

import re
from typing import Any

from dlopt.report.html import FRONT_COLOUR, render_html
from dlopt.report.junit import render_junit
from dlopt.report.markdown import render_markdown
from tests.unit.test_report_renderers import sample_report


def explained_report() -> dict[str, Any]:
    report = sample_report()
    fast = dict(report["rows"][0], variant="int8<b>", latency_ms={"p50": 0.5, "p99": 0.9})
    report["rows"].append(fast)
    report["recommendation"] = [
        {
            "backend": "onnxruntime",
            "status": "ship",
            "variant": "int8<b>",
            "artifact": "out/int8/model.onnx",
            "speedup": 3.4,
            "speedup_interval": {"low": 3.3, "high": 3.7},
            "accuracy": 0.985,
            "accuracy_change": -0.005,
            "model_size_mb": 1.6,
            "peak_rss_mb": 190.0,
            "ties": [],
        },
        {
            "backend": "openvino",
            "status": "none passes",
            "nearest_miss": {
                "variant": "fp32",
                "speedup": 1.0,
                "speedup_interval": None,
                "failed": [{"gate": "cosine_min", "reason": "0.91 < 0.99"}],
                "culprits": ["node_softmax"],
            },
        },
    ]
    report["diagnoses"] = [
        {
            "variant": "fp32",
            "backend": "openvino",
            "gates": ["cosine_min"],
            "samples": 64,
            "matched_layers": 88,
            "reference_layers": 94,
            "min_cosine": 0.99,
            "first_beyond_tolerance": {
                "index": 18,
                "layer": "node_softmax",
                "op_type": "Softmax",
                "cosine": 0.71,
                "reads_quantized": ["node_add_92"],
            },
            "worst": [
                {
                    "index": 18,
                    "layer": "node_softmax",
                    "op_type": "Softmax",
                    "cosine": 0.71,
                    "sqnr_db": 3.1,
                    "input_sqnr_db": 57.8,
                    "reads_quantized": ["node_add_92"],
                    "keep_float": ["node_add_92", "node_softmax"],
                }
            ],
            "suggestion": {"text": "return these 2 nodes to float: node_add_92, node_softmax"},
        }
    ]
    return report


def test_markdown_opens_with_the_recommendation_then_the_culprits() -> None:
    text = render_markdown(explained_report())

    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:3] == ["## Recommendation", "## Why accuracy gates failed", "## Gates"]
    assert "| onnxruntime | **int8&lt;b&gt;** | 3.4× [3.30, 3.70] | 0.985 (-0.50 pt) |" in text
    assert "nearest miss fp32" in text and "node_softmax" in text
    assert "| 18 | node_softmax | Softmax | 0.71 | 57.8 → 3.1 | node_add_92 |" in text
    assert "**Try:** return these 2 nodes to float" in text


def test_html_recommendation_comes_before_the_gates_and_gates_are_grouped() -> None:
    text = render_html(explained_report())

    assert text.index("id='recommendation'") < text.index("id='gates'")
    assert "<strong>int8&lt;b&gt;</strong>" in text
    groups = re.findall(r"<tr class='group'><th colspan='7'>([^<]*)</th>", text)
    assert groups == [
        "&lt;script&gt;alert(1)&lt;/script&gt;|x: 1 pass",
        "fp32: 1 fail, 1 inconclusive, 1 skipped",
    ]
    assert text.count("<tbody>") >= 2
    assert "<th>variant</th><th>backend</th><th>gate</th>" not in text  # the heading names it


def test_the_pareto_front_is_a_visible_line_through_the_undominated_points() -> None:
    text = render_html(explained_report())

    front = re.findall(
        rf'<path d="([^"]+)"[^>]*style="[^"]*stroke: {FRONT_COLOUR}[^"]*stroke-width: 2', text
    )
    assert front, "no Pareto front line in the SVG"
    vertices = len(re.findall(r"[ML]", front[0]))
    # bottom edge -> the faster point -> the right edge: a staircase, not a lone point
    assert vertices >= 3
    assert "Pareto front (1 of 2)" in text
    assert "int8&lt;b&gt; @ onnxruntime" in text  # points are named in a legend, not on top


def test_junit_failure_text_carries_the_culprit_layers() -> None:
    text = render_junit(explained_report())

    assert "layers adding the most error: node_softmax" in text
    assert "try: return these 2 nodes to float" in text
