"""The parts of a gate report that explain it: the recommendation (which artifact to ship per
backend), the diagnoses (the layers behind a failed accuracy gate and what to try), and the
gate rows grouped by variant. Markdown and HTML render the same content."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from dlopt.report.format import cell, fmt_interval, fmt_number


def grouped_by_variant(gates: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Gate rows grouped by variant, variants in order of first appearance (fp32 first)."""
    groups: dict[str, list[Any]] = {}
    for gate in gates:
        groups.setdefault(str(gate["variant"]), []).append(gate)
    return list(groups.items())


def verdict_counts(gates: Sequence[Mapping[str, Any]]) -> str:
    """`3 pass, 1 fail` for a group's heading."""
    counts: dict[str, int] = {}
    for gate in gates:
        counts[str(gate["verdict"])] = counts.get(str(gate["verdict"]), 0) + 1
    return ", ".join(f"{count} {verdict}" for verdict, count in counts.items())


def speedup_text(entry: Mapping[str, Any]) -> str:
    """`3.41× [3.31, 3.66]`; `1× (the reference)` for FP32."""
    if entry.get("speedup_interval") is None and entry.get("speedup") == 1.0:
        return "1× (the FP32 reference)"
    return f"{fmt_number(entry.get('speedup'))}× {fmt_interval(entry.get('speedup_interval'))}"


def accuracy_text(entry: Mapping[str, Any]) -> str:
    """`0.9933 (−0.11 pt)`, or the cosine when there is no accuracy."""
    accuracy, change = entry.get("accuracy"), entry.get("accuracy_change")
    if accuracy is None:
        cosine = entry.get("cosine")
        return f"cosine {fmt_number(cosine)}" if cosine is not None else "—"
    if change is None:
        return fmt_number(accuracy)
    return f"{fmt_number(accuracy)} ({change * 100:+.2f} pt)"


def ties_text(entry: Mapping[str, Any]) -> str:
    """The other passing variants whose speedup intervals overlap the pick's."""
    return (
        f"also passing, with a speedup interval that overlaps {entry['variant']}'s (too close "
        f"to call on this run): {', '.join(entry['ties'])}"
    )


def not_picked_text(entry: Mapping[str, Any]) -> str:
    """Variants never shipped for this backend: slower than FP32 or below the default budget."""
    return "not picked here: " + "; ".join(
        f"{item['variant']} ({item['reason']})" for item in entry.get("not_picked") or []
    )


def miss_text(entry: Mapping[str, Any]) -> str:
    """Why the nearest miss missed: its failed gates and culprit layers."""
    miss = entry["nearest_miss"]
    reasons = "; ".join(
        f"{failed['gate']} {failed.get('reason') or 'failed'}" for failed in miss.get("failed", [])
    )
    text = f"nearest miss {miss['variant']} ({speedup_text(miss)}): {reasons}"
    if miss.get("culprits"):
        text += f"; layers adding the most error: {', '.join(miss['culprits'][:3])}"
    return text


def markdown_recommendation(report: Mapping[str, Any]) -> list[str]:
    entries = report.get("recommendation") or []
    if not entries:
        return []
    lines = [
        "## Recommendation",
        "",
        "The fastest variant that passes every gate on each backend, by the low end of its "
        "speedup interval.",
        "",
        "| backend | ship | speedup vs FP32 (95% CI) | accuracy | size MB | peak RSS MB "
        "| artifact |",
        "|---|---|---|---|---:|---:|---|",
    ]
    notes: list[str] = []
    for entry in entries:
        if entry["status"] == "ship":
            lines.append(
                f"| {cell(entry['backend'])} | **{cell(entry['variant'])}** | "
                f"{speedup_text(entry)} | {accuracy_text(entry)} | "
                f"{fmt_number(entry.get('model_size_mb'))} | "
                f"{fmt_number(entry.get('peak_rss_mb'))} | `{cell(entry.get('artifact') or '')}` |"
            )
            if entry.get("ties"):
                notes.append(f"- {cell(entry['backend'])}: {cell(ties_text(entry))}")
        else:
            lines.append(f"| {cell(entry['backend'])} | ❌ nothing passes every gate | | | | | |")
        if entry.get("nearest_miss"):
            notes.append(f"- {cell(entry['backend'])}: {cell(miss_text(entry))}")
        if entry.get("not_picked"):
            notes.append(f"- {cell(entry['backend'])}: {cell(not_picked_text(entry))}")
    return [*lines, "", *notes, *([""] if notes else [])]


def markdown_diagnoses(report: Mapping[str, Any]) -> list[str]:
    diagnoses = report.get("diagnoses") or []
    if not diagnoses:
        return []
    lines = ["## Why accuracy gates failed", ""]
    for diagnosis in diagnoses:
        lines += [
            f"### {cell(diagnosis['variant'])} on {cell(diagnosis['backend'])} "
            f"({cell(', '.join(diagnosis['gates']))})",
            "",
        ]
        if diagnosis.get("error"):
            lines += [f"No layer diff: {cell(diagnosis['error'])}", ""]
        else:
            lines += [_first_text(diagnosis, cell), ""]
            lines += [
                "| # | layer | op | cosine | SQNR in → out dB | reads the quantized output of |",
                "|---:|---|---|---:|---|---|",
            ]
            for layer in diagnosis.get("worst", []):
                lines.append(
                    f"| {layer['index']} | {cell(layer['layer'])} | {cell(layer['op_type'])} | "
                    f"{fmt_number(layer.get('cosine'))} | {_sqnr(layer)} | "
                    f"{cell(', '.join(layer.get('reads_quantized') or []))} |"
                )
            lines.append("")
        suggestion = (diagnosis.get("suggestion") or {}).get("text")
        if suggestion:
            lines += [f"**Try:** {cell(suggestion)}", ""]
    return lines


def html_recommendation(report: Mapping[str, Any]) -> str:
    e = html.escape
    entries = report.get("recommendation") or []
    if not entries:
        return ""
    rows, notes = [], []
    for entry in entries:
        if entry["status"] == "ship":
            cells = [
                f"<strong>{e(str(entry['variant']))}</strong>",
                e(speedup_text(entry)),
                e(accuracy_text(entry)),
                e(fmt_number(entry.get("model_size_mb"))),
                e(fmt_number(entry.get("peak_rss_mb"))),
                f"<code>{e(str(entry.get('artifact') or ''))}</code>",
            ]
            rows.append(
                f"<tr class='pass'><td>{e(str(entry['backend']))}</td>"
                + "".join(f"<td>{c}</td>" for c in cells)
                + "</tr>"
            )
            if entry.get("ties"):
                notes.append(f"{e(str(entry['backend']))}: {e(ties_text(entry))}")
        else:
            rows.append(
                f"<tr class='fail'><td>{e(str(entry['backend']))}</td>"
                "<td colspan='6'>nothing passes every gate</td></tr>"
            )
        if entry.get("nearest_miss"):
            notes.append(f"{e(str(entry['backend']))}: {e(miss_text(entry))}")
        if entry.get("not_picked"):
            notes.append(f"{e(str(entry['backend']))}: {e(not_picked_text(entry))}")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "backend",
            "ship",
            "speedup vs FP32 (95% CI)",
            "accuracy",
            "size MB",
            "peak RSS MB",
            "artifact",
        )
    )
    return (
        "<h2>Recommendation</h2><p>The fastest variant that passes every gate on each backend, "
        "by the low end of its speedup interval.</p>"
        f"<table id='recommendation'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
        "</tbody></table>" + "".join(f"<p class='note'>{note}</p>" for note in notes)
    )


def html_diagnoses(report: Mapping[str, Any]) -> str:
    e = html.escape
    diagnoses = report.get("diagnoses") or []
    if not diagnoses:
        return ""
    parts = ["<h2>Why accuracy gates failed</h2>"]
    for diagnosis in diagnoses:
        parts.append(
            f"<h3>{e(str(diagnosis['variant']))} on {e(str(diagnosis['backend']))} "
            f"({e(', '.join(diagnosis['gates']))})</h3>"
        )
        if diagnosis.get("error"):
            parts.append(f"<p>No layer diff: {e(str(diagnosis['error']))}</p>")
        else:
            parts.append(f"<p>{_first_text(diagnosis, e)}</p>")
            body = "".join(
                f"<tr><td class='num'>{layer['index']}</td><td>{e(str(layer['layer']))}</td>"
                f"<td>{e(str(layer['op_type']))}</td>"
                f"<td class='num'>{e(fmt_number(layer.get('cosine')))}</td>"
                f"<td>{e(_sqnr(layer))}</td>"
                f"<td>{e(', '.join(layer.get('reads_quantized') or []))}</td></tr>"
                for layer in diagnosis.get("worst", [])
            )
            head = "".join(
                f"<th>{h}</th>"
                for h in (
                    "#",
                    "layer",
                    "op",
                    "cosine",
                    "SQNR in → out dB",
                    "reads the quantized output of",
                )
            )
            parts.append(
                f"<table class='culprits'><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>"
            )
        suggestion = (diagnosis.get("suggestion") or {}).get("text")
        if suggestion:
            parts.append(f"<p><strong>Try:</strong> {e(suggestion)}</p>")
    return "".join(parts)


def _first_text(diagnosis: Mapping[str, Any], escape: Any) -> str:
    first = diagnosis.get("first_beyond_tolerance")
    compared = (
        f"Compared with FP32 on ONNX Runtime, layer by layer, on {diagnosis.get('samples')} "
        f"samples ({diagnosis.get('matched_layers')} of {diagnosis.get('reference_layers')} "
        "layers matched by name)."
    )
    if first is None:
        return escape(f"{compared} Every layer has cosine >= {diagnosis.get('min_cosine')}.")
    reads = first.get("reads_quantized") or []
    text = (
        f"{compared} First layer below cosine {diagnosis.get('min_cosine')}: "
        f"#{first['index']} {first['layer']} ({first['op_type']}), cosine "
        f"{fmt_number(first.get('cosine'))}"
        + (f", reading the quantized output of {', '.join(reads)}" if reads else "")
        + ". The layers that add the most error:"
    )
    return str(escape(text))


def _sqnr(layer: Mapping[str, Any]) -> str:
    return f"{fmt_number(layer.get('input_sqnr_db'))} → {fmt_number(layer.get('sqnr_db'))}"
