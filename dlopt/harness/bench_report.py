"""The bench report as JSON (schema: `bench_schema.json`, versioned) and as a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlopt.artifacts import atomic_write_text
from dlopt.harness.results import BenchReport, BenchRow
from dlopt.plain_text import markdown_cell, plain_text

SCHEMA_PATH = Path(__file__).with_name("bench_schema.json")


def bench_schema() -> dict[str, Any]:
    """The JSON Schema every bench JSON file follows."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def write_json(report: BenchReport, path: Path) -> None:
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")


def render_markdown(report: BenchReport) -> str:
    """One row per (model, backend): status, latency, ratio, memory, size and worst drift."""
    header = (
        "| model | backend | status | p50 ms (95% CI) | p99 ms | items/s | ratio to ref (95% CI) "
        "| peak RSS MB | size MB | max abs err | cosine | top-1 agree | metric (change) |"
    )
    lines = [f"# dlopt bench (schema v{report.schema_version}, {report.created_utc})", "", header]
    lines.append("|" + "---|" * header.count(" |"))
    for row in report.rows:
        lines.append("| " + " | ".join(markdown_cell(text) for text in row_cells(row)) + " |")
    notes = [(row, warning) for row in report.rows for warning in row.warnings]
    if notes:
        lines += ["", "Warnings:", ""]
        lines += [
            f"- {markdown_cell(row.model)} on {row.backend}: {markdown_cell(warning)}"
            for row, warning in notes
        ]
    return "\n".join(lines) + "\n"


def model_labels(models: list[str]) -> dict[str, str]:
    """A short, distinct name per model for table rows: the file name where it is unique, else
    the fewest trailing folders that tell the files apart (`cnn-int8/model.onnx` beside
    `cnn/model.onnx`, where every file is model.onnx); sources that are no path stay as given."""
    from pathlib import PurePath

    parts = {model: PurePath(model).parts for model in models}
    labels: dict[str, str] = {}
    for model in models:
        if ":" in model and not PurePath(model).suffix:  # file.py:factory, hf:..., torchvision:
            labels[model] = model
            continue
        mine = parts[model]
        for depth in range(1, len(mine) + 1):
            tail = mine[-depth:]
            if all(other == model or parts[other][-depth:] != tail for other in models):
                labels[model] = str(PurePath(*tail))
                break
        else:
            labels[model] = model
    return labels


def row_cells(row: BenchRow, label: str | None = None) -> list[str]:
    """The row's cells as plain text (no control characters); each renderer escapes them for
    its own format. `label` names the model instead of its full path (see model_labels)."""
    status = row.status if row.reason is None else f"{row.status}: {row.reason}"
    name = plain_text(label or row.model)
    cells = [name + (" (ref)" if row.is_reference else ""), row.backend]
    cells.append(plain_text(status))
    latency, ratio = row.latency or {}, row.latency_ratio_to_reference
    if latency:
        low, high = latency["median_ci95_ms"]
        cells += [
            f"{latency['p50_ms']:.3f} ({low:.3f}–{high:.3f})",
            f"{latency['p99_ms']:.3f}",
            f"{latency['throughput_items_per_s']:.1f}",
        ]
    else:
        cells += ["", "", ""]
    cells.append(
        f"{ratio['median_ratio']:.3f} ({ratio['ci95'][0]:.3f}–{ratio['ci95'][1]:.3f})"
        if ratio
        else ""
    )
    peak = (row.memory or {}).get("peak_rss_bytes")
    cells.append(f"{peak / 2**20:.1f}" if peak else "")
    cells.append(f"{row.size_bytes / 2**20:.2f}" if row.size_bytes else "")
    worst = _worst_drift(row)
    cells += [
        f"{worst['max_abs_error']:.2e}" if worst else "",
        f"{worst['cosine']:.6f}" if worst else "",
        f"{worst['top1_agreement']:.4f}" if worst and "top1_agreement" in worst else "",
    ]
    cells.append(_headline_metric(row))
    return cells


def _worst_drift(row: BenchRow) -> dict[str, Any] | None:
    if not row.drift:
        return None
    return max(row.drift.values(), key=lambda entry: entry["max_abs_error"])


def _headline_metric(row: BenchRow) -> str:
    for name in ("accuracy", "mae"):
        entry = (row.metrics or {}).get(name)
        if entry and entry["value"] is not None:
            change = entry["change"]
            return f"{name} {entry['value']:.4f}" + (
                f" ({change:+.4f})" if change is not None else ""
            )
    return ""
