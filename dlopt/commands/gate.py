"""`dlopt gate`: the release gate, from one config file to a verdict, reports and exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlopt.commands._common import (
    ExecutorOpt,
    KeepDebugMetadataOpt,
    ModelKeyOpt,
    RayAddressOpt,
    StageUriOpt,
)

EXAMPLES = """\
Examples:

  dlopt gate models/digits_cnn/dlopt.toml

  dlopt gate dlopt.toml --only int8-static -o reports/pr-123

  dlopt gate dlopt.toml --baseline reports/main/report.json

  dlopt gate dlopt.toml --sign-key keys/release.key --key-file keys/model.key
  dlopt gate dlopt.toml --executor ray --ray-address head-node:6379 --mlflow

  dlopt gate dlopt.toml --shard 2/4 -o shard-2      # then: dlopt report merge shard-*/report.json

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
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    stage_uri: StageUriOpt = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            help="Run the Kth of N shares of the variants (round robin in config order; fp32 "
            "in every share); join the shards with `dlopt report merge`.",
            show_default=False,
        ),
    ] = None,
    mlflow: Annotated[
        str | None,
        typer.Option(
            "--mlflow",
            metavar="[URI]",
            help="Log the run to MLflow: one parent run, a nested run per (variant, backend). "
            "Alone (put it after the config) or `default`: [tracking] mlflow, else "
            "sqlite:///mlflow.db beside the reports. Needs dlopt[mlflow].",
            show_default=False,
        ),
    ] = None,
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
    from dlopt.gate.shards import parse_shard
    from dlopt.harness.executors import make_executor
    from dlopt.path_safety import check_outputs
    from dlopt.report.tracking import DEFAULT_URI, require_mlflow, resolve_uri
    from dlopt.trust.keys import load_model_key, load_signing_key

    loaded = load_gate_config(config)
    signing_key, model_key = load_signing_key(sign_key), load_model_key(key_file)
    folder = output_dir or Path("reports") / (config.resolve().parent.name or "run")
    check_outputs([*config_inputs(loaded), baseline], folders=[folder])
    chosen_shard = parse_shard(shard) if shard is not None else None
    chosen_executor = make_executor(executor, ray_address, stage_uri)
    tracking = loaded.tracking.mlflow if mlflow in (None, DEFAULT_URI) else mlflow
    tracking = tracking or (DEFAULT_URI if mlflow is not None else None)
    if tracking is not None:
        require_mlflow()  # before any work: a missing extra is exit 2, not a lost run
        tracking = resolve_uri(tracking, folder, loaded.path.resolve().parent)
    console = Console(stderr=True)
    with progress_display("dlopt gate") as say:
        outcome = run_gate(
            loaded,
            folder,
            only or (),
            baseline,
            progress=say,
            signing_key=signing_key,
            model_key=model_key,
            executor=chosen_executor,
            shard=chosen_shard,
            mlflow_uri=tracking,
        )
    Console().print(verdict_table(outcome.report))
    for name, path in outcome.report_paths.items():
        console.print(f"wrote {path}" if name == "report.json" else f"      {path}", markup=False)
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    raise typer.Exit(int(outcome.exit_code))
