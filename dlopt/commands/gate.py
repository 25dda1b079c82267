"""`dlopt gate`: the release gate, from one config file to a verdict, reports and exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlopt.commands._common import KeepDebugMetadataOpt, ModelKeyOpt

EXAMPLES = """\
Examples:

  dlopt gate models/digits_cnn/dlopt.toml

  dlopt gate dlopt.toml --only int8-static -o reports/pr-123

  dlopt gate dlopt.toml --baseline reports/main/report.json

  dlopt gate dlopt.toml --sign-key keys/release.key --key-file keys/model.key

  dlopt gate --print-schema > dlopt-config.schema.json
"""


def gate(
    config: Annotated[
        Path | None,
        typer.Argument(help="The gate config (TOML), e.g. models/digits_cnn/dlopt.toml."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only these variants (repeatable); fp32 always runs."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="A previous run's report.json: judge latency and accuracy regressions."),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Report folder. Default: reports/<config's folder>."),
    ] = None,
    print_schema: Annotated[
        bool, typer.Option("--print-schema", help="Print the config's JSON Schema and exit.")
    ] = False,
    keep_debug_metadata: KeepDebugMetadataOpt = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help="Ed25519 private key (`dlopt keygen`) that signs attestation.json (a DSSE "
            "envelope). Default: DLOPT_SIGN_KEY (a key file's path, or the PEM itself); "
            "without either the attestation is written unsigned.",
            show_default=False,
        ),
    ] = None,
    key_file: ModelKeyOpt = None,
) -> None:
    """Export, make every variant, bench every (variant, backend) pair and judge thresholds.

    Writes report.json, summary.md, junit.xml, report.html and attestation.json (an in-toto
    Statement of the artifacts that passed, signed with --sign-key); with a model key
    (--key-file), the artifacts are encrypted at rest and benched decrypted in memory. Exits 0
    when every gate passes,
    1 when one fails (a crash, a NaN or an unavailable required backend fails too), 2 for a bad
    config or input, 3 when a speed gate is too noisy to judge (rerun).
    """
    import json

    from dlopt.errors import ConfigError
    from dlopt.gate.config import load_gate_config
    from dlopt.gate.schema import config_json_schema

    if print_schema:
        print(json.dumps(config_json_schema(), indent=2))
        return
    if config is None:
        raise ConfigError("no config given", "run: dlopt gate path/to/dlopt.toml")
    from rich.console import Console
    from rich.markup import escape

    from dlopt.commands._progress import progress_display
    from dlopt.commands._tables import verdict_table
    from dlopt.gate.pipeline import run_gate
    from dlopt.gate.recipes import config_inputs
    from dlopt.path_safety import check_outputs
    from dlopt.trust.keys import load_model_key, load_signing_key

    loaded = load_gate_config(config)
    signing_key, model_key = load_signing_key(sign_key), load_model_key(key_file)
    folder = output_dir or Path("reports") / (config.resolve().parent.name or "run")
    check_outputs([*config_inputs(loaded), baseline], folders=[folder])
    console = Console(stderr=True)
    with progress_display("dlopt gate") as say:
        outcome = run_gate(loaded, folder, only or (), baseline, say, signing_key, model_key)
    Console().print(verdict_table(outcome.report))
    for name, path in outcome.report_paths.items():
        console.print(f"wrote {path}" if name == "report.json" else f"      {path}", markup=False)
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    raise typer.Exit(int(outcome.exit_code))
