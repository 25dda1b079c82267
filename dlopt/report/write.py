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
    """report.json, summary.md, junit.xml and report.html in `output_dir`.

    The Markdown summary is also appended to `$GITHUB_STEP_SUMMARY` when that is set.
    """
    paths = {name: output_dir / name for name in REPORT_FILES}
    markdown = render_markdown(report)
    atomic_write_text(paths["report.json"], json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["summary.md"], markdown)
    atomic_write_text(paths["junit.xml"], render_junit(report))
    atomic_write_text(paths["report.html"], render_html(report))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as stream:
            stream.write(markdown)
    return paths


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
    return report
