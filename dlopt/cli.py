"""The `dlopt` command line. Each command lives in `dlopt/commands/`; heavy imports stay inside
the command functions so that `dlopt --help` answers at once."""

from __future__ import annotations

import typer

from dlopt import __version__
from dlopt.commands import backends as backends_command
from dlopt.commands import bench as bench_command
from dlopt.commands import build as build_command
from dlopt.commands import diff as diff_command
from dlopt.commands import export as export_command
from dlopt.commands import gate as gate_command
from dlopt.commands import inspect as inspect_command
from dlopt.commands import prune as prune_command
from dlopt.commands import quantize as quantize_command
from dlopt.commands import report as report_command

app = typer.Typer(
    name="dlopt",
    help="Export, quantize, prune, build and benchmark trained models, and gate releases on "
    "accuracy and speed.\n\nExit codes: 0 ok, 1 gate failed, 2 usage/input error, "
    "3 inconclusive (rerun), 4 internal error.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"dlopt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """dlopt: deployment optimization for trained models."""


app.command("export", epilog=export_command.EXAMPLES)(export_command.export)
app.command("quantize", epilog=quantize_command.EXAMPLES)(quantize_command.quantize)
app.command("bench", epilog=bench_command.EXAMPLES)(bench_command.bench)
app.command("backends", epilog=backends_command.EXAMPLES)(backends_command.backends)
app.command("gate", epilog=gate_command.EXAMPLES)(gate_command.gate)
app.command("prune", epilog=prune_command.EXAMPLES)(prune_command.prune)
app.command("report", epilog=report_command.EXAMPLES)(report_command.report)
app.command("build", epilog=build_command.EXAMPLES)(build_command.build)
app.command("diff", epilog=diff_command.EXAMPLES)(diff_command.diff)
app.command("inspect", epilog=inspect_command.EXAMPLES)(inspect_command.inspect)


def main() -> None:
    """Console-script entry point."""
    app()
