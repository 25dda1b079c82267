"""Write the four report files of a gate run, each atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dlopt.artifacts import atomic_write_text
from dlopt.errors import ArtifactError
from dlopt.report.html import render_html
from dlopt.report.junit import render_junit
from dlopt.report.markdown import render_markdown

REPORT_FILES = ("report.json", "summary.md", "junit.xml", "report.html")


def write_reports(report: dict[str, Any], output_dir: Path) -> dict[str, Path]:
    """report.json, summary.md, junit.xml and report.html in `output_dir`."""
    paths = {name: output_dir / name for name in REPORT_FILES}
    atomic_write_text(paths["report.json"], json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["summary.md"], render_markdown(report))
    atomic_write_text(paths["junit.xml"], render_junit(report))
    atomic_write_text(paths["report.html"], render_html(report))
    return paths


def append_step_summary(report: dict[str, Any]) -> str | None:
    """Append the Markdown summary to `$GITHUB_STEP_SUMMARY` when it is set.

    Returns a warning when that file cannot be written: the run's own reports are written
    already, so a CI summary that cannot be added must not turn a verdict into an error.
    """
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not step_summary:
        return None
    try:
        with open(step_summary, "a", encoding="utf-8") as stream:
            stream.write(render_markdown(report))
    except OSError as error:
        return f"cannot append the summary to GITHUB_STEP_SUMMARY ({step_summary}): {error}"
    return None


def read_report(path: Path) -> dict[str, Any]:
    """A report.json written by `dlopt gate`; raises ArtifactError when it is not one."""
    if not path.is_file():
        raise ArtifactError(f"report {path} does not exist", "give the report.json of a gate run")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(
            f"cannot read report {path}: {error}", "is it a report.json?"
        ) from error
    if not isinstance(report, dict) or "gates" not in report or "verdict" not in report:
        raise ArtifactError(
            f"{path} is not a dlopt gate report", "give the report.json of a gate run"
        )
    problem = report_problem(report)
    if problem:
        raise ArtifactError(
            f"{path} is not a complete dlopt gate report: {problem}",
            "give the report.json of a gate run, as `dlopt gate` wrote it",
        )
    return report


# What the renderers and the baseline gates read, checked by hand: jsonschema is only a
# development dependency, and these few checks turn a damaged file into exit 2 up front
# instead of a KeyError (exit 4) after a whole gate run.
_GATE_KEYS = {"variant": str, "backend": str, "gate": str, "verdict": str}
_ROW_KEYS = {"variant": str, "backend": str, "status": str, "bench": dict}
_NUMBER = (int, float)


def report_problem(report: dict[str, Any]) -> str | None:
    """What is missing or mistyped in a report.json dict, or None when renderers can read it."""
    if not isinstance(report.get("verdict"), str):
        return "verdict is missing or not a string"
    if not isinstance(report.get("exit_code"), int):
        return "exit_code is missing or not an integer"
    for key, required in (("gates", _GATE_KEYS), ("rows", _ROW_KEYS)):
        items = report.get(key)
        if not isinstance(items, list):
            return f"{key} is missing or not a list"
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                return f"{key}[{index}] is not an object"
            for name, kind in required.items():
                if not isinstance(item.get(name), kind):
                    return f"{key}[{index}].{name} is missing or not a {kind.__name__}"
    for index, row in enumerate(report.get("rows", [])):
        latency = row.get("latency_ms")
        if latency is not None and not isinstance(latency, dict):
            return f"rows[{index}].latency_ms is not an object"
        problem = _bench_problem(row["bench"])
        if problem:
            return f"rows[{index}].bench{problem}"
    return None


def _bench_problem(bench: dict[str, Any]) -> str | None:
    """The parts of a raw bench row that a baseline comparison reads."""
    latency = bench.get("latency") or {}
    metrics = bench.get("metrics") or {}
    if not isinstance(latency, dict) or not isinstance(metrics, dict):
        return ".latency or .metrics is not an object"
    samples = latency.get("samples_ns") or []
    if not isinstance(samples, list) or not all(
        isinstance(value, _NUMBER) and not isinstance(value, bool) for value in samples
    ):
        return ".latency.samples_ns is not a list of numbers"
    accuracy = metrics.get("accuracy") or {}
    value = accuracy.get("value") if isinstance(accuracy, dict) else "?"
    if value is not None and not isinstance(value, _NUMBER):
        return ".metrics.accuracy.value is not a number"
    return None
