"""The Markdown summary: the verdict, the recommendation, why accuracy gates failed, the gate
table and the measurements table."""

from __future__ import annotations

from typing import Any

from dlopt.report.explain import (
    grouped_by_variant,
    markdown_diagnoses,
    markdown_recommendation,
)
from dlopt.report.format import cell, fmt_interval, fmt_number
from dlopt.report.nodes import node_summary

_ICONS = {
    "pass": "✅ pass",
    "fail": "❌ FAIL",
    "inconclusive": "⚠️ inconclusive",
    "skipped": "⏭️ skipped",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The summary as Markdown (GitHub-flavoured tables); strings from configs are escaped.

    The recommendation comes first, then why accuracy gates failed, then the gates grouped
    by variant (each row keeps its variant's name, for grep) and the measurements.
    """
    lines = [
        f"# dlopt gate: {_ICONS.get(report['verdict'], cell(report['verdict']))}",
        "",
        f"Config `{cell(report.get('config', ''))}`, exit code {cell(report['exit_code'])}, "
        f"{cell(report.get('created_utc', ''))}.",
        "",
        *markdown_recommendation(report),
        *markdown_diagnoses(report),
        "## Gates",
        "",
        "| variant | backend | gate | measured | threshold | 95% interval | verdict | reason |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    for _, gates in grouped_by_variant(report.get("gates", [])):
        for gate in gates:
            lines.append(
                f"| {cell(gate['variant'])} | {cell(gate['backend'])} | {cell(gate['gate'])} | "
                f"{fmt_number(gate.get('measured'))} | {fmt_number(gate.get('threshold'))} | "
                f"{fmt_interval(gate.get('interval'))} | "
                f"{_ICONS.get(gate['verdict'], cell(gate['verdict']))} | "
                f"{cell(gate.get('reason', ''))} |"
            )
    lines += [
        "",
        "## Measurements",
        "",
        "| variant | backend | status | p50 ms | p99 ms | speedup (95% CI) | accuracy | cosine "
        "| peak RSS MB | size MB |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in report.get("rows", []):
        latency = row.get("latency_ms") or {}
        speedup = row.get("speedup") or {}
        lines.append(
            f"| {cell(row['variant'])} | {cell(row['backend'])} | "
            f"{cell(row['status'])}{': ' + cell(row['reason']) if row.get('reason') else ''} | "
            f"{fmt_number(latency.get('p50'))} | {fmt_number(latency.get('p99'))} | "
            f"{fmt_number(speedup.get('ratio'))} {fmt_interval(speedup.get('interval'))} | "
            f"{fmt_number((row.get('metrics') or {}).get('accuracy'))} | "
            f"{fmt_number((row.get('drift') or {}).get('cosine'))} | "
            f"{fmt_number(row.get('peak_rss_mb'))} | {fmt_number(row.get('model_size_mb'))} |"
        )
    nodes = node_summary(report)
    if nodes:
        lines += ["", "## Where it ran", "", "| node | hardware | rows |", "|---|---|---|"]
        lines += [
            f"| {cell(n['node'])} | {cell(n['hardware'])} | {cell(n['rows'])} |" for n in nodes
        ]
    warned = [row for row in report.get("rows", []) if row.get("runtime_warnings")]
    if warned:
        lines += ["", "Warnings about the runtime a variant ran on:", ""]
        for row in warned:
            for warning in row["runtime_warnings"]:
                lines.append(
                    f"- ⚠ {cell(row['variant'])} on {cell(row['backend'])}: {cell(warning)}"
                )
    return "\n".join(lines) + "\n"
