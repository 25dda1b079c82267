"""`dlopt report`: re-render a gate run's reports from its report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXAMPLES = """\
Examples:

  dlopt report reports/run/report.json --html out.html

  dlopt report reports/run/report.json --md summary.md --junit junit.xml
"""


def report(
    report_json: Annotated[Path, typer.Argument(help="report.json written by `dlopt gate`.")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    md: Annotated[
        Path | None, typer.Option("--md", help="Write the Markdown summary here.")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
) -> None:
    """Re-render the HTML, Markdown and JUnit reports of a gate run from its report.json.

    With no option, all three are written next to the report.json.
    """
    from dlopt.artifacts import atomic_write_text
    from dlopt.path_safety import check_outputs
    from dlopt.report.html import render_html
    from dlopt.report.junit import render_junit
    from dlopt.report.markdown import render_markdown
    from dlopt.report.write import read_report

    if html is None and md is None and junit is None:
        folder = report_json.parent
        html, md, junit = folder / "report.html", folder / "summary.md", folder / "junit.xml"
    check_outputs([report_json], files=[html, md, junit])
    data = read_report(report_json)
    for path, render in ((html, render_html), (md, render_markdown), (junit, render_junit)):
        if path is not None:
            atomic_write_text(path, render(data))
            print(f"wrote {path}")
