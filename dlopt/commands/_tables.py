"""Rich tables the commands print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from dlopt.optimize.export import ExportResult


def parity_table(result: ExportResult) -> Table:
    """Per shape and output: max abs error, relative L2 error, cosine, verdict."""
    table = Table(title=f"{result.format} parity ({result.path})")
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


def verdict_table(report: dict[str, Any]) -> Table:
    """The gate's verdicts, one row per (variant, backend, gate)."""
    colours = {"pass": "green", "fail": "red", "inconclusive": "yellow", "skipped": "dim"}
    verdict = report["verdict"]
    table = Table(
        title=f"dlopt gate: [{colours.get(verdict, 'red')}]{verdict.upper()}[/] "
        f"(exit {report['exit_code']})"
    )
    for column in ("variant", "backend", "gate", "measured", "threshold", "95% CI", "verdict"):
        table.add_column(column, no_wrap=column in ("gate", "verdict"))
    table.add_column("reason", overflow="fold", ratio=1)
    for gate in report["gates"]:
        interval = gate.get("interval")
        table.add_row(
            escape(str(gate["variant"])),
            gate["backend"],
            gate["gate"],
            _number(gate.get("measured")),
            _number(gate.get("threshold")),
            f"[{_number(interval['low'])}, {_number(interval['high'])}]" if interval else "",
            f"[{colours.get(gate['verdict'], 'red')}]{gate['verdict']}[/]",
            escape(gate.get("reason") or ""),
        )
    return table


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}"
