"""Rich tables the commands print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from dlopt.plain_text import plain_text
from dlopt.report.format import fmt_bounds

if TYPE_CHECKING:
    from dlopt.optimize.export import ExportResult


def parity_table(result: ExportResult) -> Table:
    """Per shape and output: max abs error, relative L2 error, cosine, verdict."""
    table = Table(title=escape(f"{result.format} parity ({result.path})"))
    for column in ("shapes", "output", "max abs err", "rel L2 err", "cosine", "ok"):
        table.add_column(
            column, justify="right" if "err" in column or column == "cosine" else "left"
        )
    for row in result.parity.rows:
        table.add_row(
            row.shapes,
            row.output,
            f"{row.max_abs_error:.2e}",
            f"{row.relative_l2_error:.2e}",
            f"{row.cosine:.6f}",
            "[green]yes[/green]" if row.passed else f"[red]NO[/red] {row.note}",
        )
    for skipped in result.parity.skipped:
        table.add_row(skipped, "", "", "", "", "[yellow]skipped[/yellow]")
    return table


def verdict_table(report: dict[str, Any]) -> Group:
    """The gate's verdicts: under a line per (variant, backend), one row per gate; the reasons
    of the gates that did not pass follow the table. Fits an 80-column CI log: only the
    variant lines fold, never a number or an interval."""
    colours = {"pass": "green", "fail": "red", "inconclusive": "yellow", "skipped": "dim"}
    verdict = report["verdict"]
    table = Table(
        title=f"dlopt gate: [{colours.get(verdict, 'red')}]{verdict.upper()}[/] "
        f"(exit {report['exit_code']})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for column in ("gate", "measured", "limit", "95% CI", "verdict"):
        table.add_column(column, overflow="fold", no_wrap=column != "gate")
    notes: list[str] = []
    from dlopt.report.explain import grouped_by_variant

    ordered = [gate for _, gates in grouped_by_variant(report["gates"]) for gate in gates]
    current: tuple[str, str] | None = None
    for gate in ordered:
        pair = (_text(gate["variant"]), _text(gate["backend"]))
        if pair != current:  # a recipe's gates have no backend ("-")
            where = f" on {pair[1]}" if pair[1] != "-" else ""
            table.add_row(f"[bold]{pair[0]}[/]{where}", "", "", "", "")
            current = pair
        interval = gate.get("interval")
        colour = colours.get(gate["verdict"], "red")
        table.add_row(
            "  " + _text(gate["gate"]),
            _number(gate.get("measured")),
            _number(gate.get("threshold")),
            fmt_bounds(interval["low"], interval["high"]) if interval else "",
            f"[{colour}]{_text(gate['verdict'])}[/]",
        )
        if gate["verdict"] != "pass" and gate.get("reason"):
            notes.append(
                f"[{colour}]{_text(gate['verdict'])}[/] {pair[0]}"
                f"{f' on {pair[1]}' if pair[1] != '-' else ''}, "
                f"{_text(gate['gate'])}: {_text(gate['reason'])}"
            )
    return Group(table, *notes, *recommendation_lines(report))


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """What to ship per backend (or the nearest miss), as the report's first section says."""
    from dlopt.report.explain import accuracy_text, miss_text, speedup_text

    lines = []
    for entry in report.get("recommendation") or []:
        backend = escape(str(entry["backend"]))
        if entry["status"] == "ship":
            lines.append(
                f"[bold]ship on {backend}:[/bold] {escape(str(entry['variant']))}, "
                f"{escape(speedup_text(entry))}, accuracy {escape(accuracy_text(entry))}, "
                f"{_number(entry.get('model_size_mb'))} MB ({escape(str(entry.get('artifact')))})"
            )
        else:
            lines.append(f"[bold red]nothing passes every gate on {backend}[/bold red]")
        if entry.get("nearest_miss"):
            lines.append(f"  {escape(miss_text(entry))}")
    return lines


def _text(value: Any) -> str:
    """A report string for the console: no control characters, no Rich markup."""
    return escape(plain_text(value))


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}"


def stripped_note(manifest_file: Path) -> str:
    """One line on the debug metadata stripped from an artifact (from its manifest)."""
    from dlopt.artifacts import read_manifest

    artifact = manifest_file.with_name(manifest_file.name.removesuffix(".dlopt.json"))
    record = (read_manifest(artifact) or {}).get("debug_metadata") or {}
    if not record:
        return ""
    if record.get("kept"):
        return "  debug metadata kept (--keep-debug-metadata): it names this machine's paths"
    return (
        f"  stripped {record['entries_removed']} debug metadata entries: "
        f"{record['size_bytes_before']:,} -> {record['size_bytes_after']:,} bytes"
    )
