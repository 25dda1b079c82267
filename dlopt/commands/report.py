"""`dlopt report`: re-render a gate run's reports from its report.json (`render`, the default
subcommand), or join the reports of CI shards into one (`merge`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXAMPLES = """\
Examples:

  dlopt report reports/run/report.json --html out.html

  dlopt report reports/run/report.json --md summary.md --junit junit.xml
"""
GROUP_EXAMPLES = """\
Examples:

  dlopt report reports/run/report.json --html out.html      # = dlopt report render ...

  dlopt report merge shard-*/report.json -o merged/
"""
MERGE_EXAMPLES = """\
Examples:

  dlopt report merge shard-*/report.json -o merged/

A merged verdict that fails exits 1 (3 when inconclusive), as `dlopt gate` does.
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


def merge(
    reports: Annotated[
        list[Path],
        typer.Argument(
            help="The report.json of every shard (dlopt gate --shard K/N).", show_default=False
        ),
    ],
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the merged reports.")
    ],
) -> None:
    """Join the reports of CI shards into one verdict and one set of reports.

    Writes report.json, summary.md, junit.xml and report.html (and appends the summary to
    $GITHUB_STEP_SUMMARY); refuses shards of different configs or tool versions, and a shard
    missing or given twice (exit 2). Exits with the merged verdict's code.
    """
    from rich.console import Console
    from rich.markup import escape

    from dlopt.artifacts import ensure_writable_dir
    from dlopt.commands._tables import verdict_table
    from dlopt.gate.merge import merge_reports
    from dlopt.path_safety import check_outputs
    from dlopt.report.write import append_step_summary, write_reports

    check_outputs(list(reports), folders=[output_dir])
    merged = merge_reports(reports)
    ensure_writable_dir(output_dir)
    paths = write_reports(merged, output_dir)
    Console().print(verdict_table(merged))
    console = Console(stderr=True)
    for path in paths.values():
        console.print(f"wrote {path}", markup=False)
    warning = append_step_summary(merged)
    if warning:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    raise typer.Exit(int(merged["exit_code"]))
