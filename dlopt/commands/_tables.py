"""Rich tables the commands print."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
