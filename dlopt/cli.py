"""The `dlopt` command line. Each command lives in `dlopt/commands/`; heavy imports stay inside
the command functions so that `dlopt --help` answers at once.

The error contract is applied here, once, to every command (`report_errors`), and `main` turns
Typer's usage errors (a missing argument, an unknown option) into the same one line and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from dlopt import __version__
from dlopt.commands import backends as backends_command
from dlopt.commands import bench as bench_command
from dlopt.commands import build as build_command
from dlopt.commands import diff as diff_command
from dlopt.commands import encrypt as encrypt_command
from dlopt.commands import export as export_command
from dlopt.commands import gate as gate_command
from dlopt.commands import inspect as inspect_command
from dlopt.commands import keygen as keygen_command
from dlopt.commands import prune as prune_command
from dlopt.commands import quantize as quantize_command
from dlopt.commands import report as report_command
from dlopt.commands import verify as verify_command
from dlopt.commands._common import INTERRUPTED, report_errors
from dlopt.errors import ExitCode

# Help is Click's plain formatter (rich_markup_mode=None), not Rich's panels: at 80 columns
# Rich's option table left the help text a 20-column cell and cut every longer word with "…"
# (input specs, paths, module names); Click's formatter wraps between words and cuts nothing,
# and shows each choice option's values ([static|dynamic|fp16|bf16]). Help texts are then
# plain text too: bracketed words such as `dlopt[tensorrt]` print as written.


def _keep_layout(examples: str) -> str:
    """Examples as written: Click re-wraps epilog paragraphs unless each starts with \b."""
    paragraphs = [p for p in examples.strip("\n").split("\n\n") if p.strip()]
    return "\n\n".join(f"\b\n{paragraph}" for paragraph in paragraphs)


class _PlainHelpCommand(TyperCommand):
    pass


class _PlainHelpGroup(TyperGroup):
    pass


app = typer.Typer(
    name="dlopt",
    cls=_PlainHelpGroup,
    help="Export, quantize, prune, build and benchmark trained models, and gate releases on "
    "accuracy and speed.\n\nExit codes: 0 ok, 1 gate failed, 2 usage/input error, "
    "3 inconclusive (rerun), 4 internal error, 130 interrupted (Ctrl-C).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
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


class _ReportGroup(_PlainHelpGroup):
    """`dlopt report REPORT.json ...` stays `dlopt report render REPORT.json ...`, so the
    command kept its old form when `dlopt report merge` came."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["render", *args]
        return super().parse_args(ctx, args)


def _register(
    name: str, command: Callable[..., Any], examples: str, on: typer.Typer | None = None
) -> None:
    (on or app).command(name, epilog=_keep_layout(examples), cls=_PlainHelpCommand)(
        report_errors(command)
    )


report_app = typer.Typer(
    cls=_ReportGroup,
    help="Re-render a gate run's reports (`dlopt report REPORT.json`, the same as `dlopt "
    "report render REPORT.json`), or merge CI shards' reports (`dlopt report merge`).",
    epilog=_keep_layout(report_command.GROUP_EXAMPLES),
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


_register("export", export_command.export, export_command.EXAMPLES)
_register("quantize", quantize_command.quantize, quantize_command.EXAMPLES)
_register("bench", bench_command.bench, bench_command.EXAMPLES)
_register("backends", backends_command.backends, backends_command.EXAMPLES)
_register("gate", gate_command.gate, gate_command.EXAMPLES)
_register("prune", prune_command.prune, prune_command.EXAMPLES)
_register("render", report_command.report, report_command.EXAMPLES, on=report_app)
_register("merge", report_command.merge, report_command.MERGE_EXAMPLES, on=report_app)
app.add_typer(report_app, name="report")
_register("build", build_command.build, build_command.EXAMPLES)
_register("verify", verify_command.verify, verify_command.EXAMPLES)
_register("keygen", keygen_command.keygen, keygen_command.EXAMPLES)
_register("encrypt", encrypt_command.encrypt, encrypt_command.EXAMPLES)
_register("inspect", inspect_command.inspect, inspect_command.EXAMPLES)
_register("diff", diff_command.diff, diff_command.EXAMPLES)


def main() -> None:
    """Console-script entry point: exit codes as in the README."""
    try:
        code = app(args=with_optional_values(sys.argv[1:]), standalone_mode=False)
    except typer.TyperException as error:  # Typer's usage errors (Click's, vendored)
        code = getattr(error, "exit_code", ExitCode.USAGE_ERROR)
        if type(error).__name__ != "NoArgsIsHelpError":  # the help is already printed
            print(f"error: {_usage_line(error)}", file=sys.stderr)
            code = ExitCode.USAGE_ERROR
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        code = INTERRUPTED
    sys.exit(int(code or 0))


# Options whose value may be left out, and the value they then take (`--mlflow` alone).
# Typer has no such option type, so the one missing value is written in before parsing.
OPTIONAL_VALUES = {"--mlflow": "default"}


def with_optional_values(args: list[str]) -> list[str]:
    """`args` with the implied value after an optional-value option given without one (at the
    end, or followed by another option)."""
    completed: list[str] = []
    for index, argument in enumerate(args):
        completed.append(argument)
        following = args[index + 1] if index + 1 < len(args) else None
        if argument in OPTIONAL_VALUES and (following is None or following.startswith("-")):
            completed.append(OPTIONAL_VALUES[argument])
    return completed


def _usage_line(error: typer.TyperException) -> str:
    """`Missing argument 'MODELS...'. See: dlopt bench --help.` on one line."""
    message = " ".join(error.format_message().split()).rstrip(".")
    context = getattr(error, "ctx", None)
    where = f"{context.command_path} --help" if context is not None else "dlopt --help"
    return f"{message}. See: {where}."
