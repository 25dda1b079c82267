"""`dlopt backends`: every backend, whether it runs here, its version, and why not."""

from __future__ import annotations

EXAMPLES = """\
Examples:

  dlopt backends
"""


def backends() -> None:
    """List every backend, available or not, with its version and the formats it runs.

    Checks installs without importing the runtimes, so it answers at once.
    """
    from rich.console import Console
    from rich.table import Table

    from dlopt.backends import BACKENDS, get_backend

    table = Table(title="dlopt backends")
    for column in ("backend", "available", "version", "formats", "reason"):
        table.add_column(column)
    for name in BACKENDS:
        backend = get_backend(name)
        availability = backend.availability()
        table.add_row(
            name,
            "[green]yes[/green]" if availability.ok else "[red]no[/red]",
            availability.version or "",
            ", ".join(sorted(backend.formats)),
            availability.reason or "",
        )
    Console().print(table)
