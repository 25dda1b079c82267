"""`dlopt verify`: artifacts against their manifests and parents, or against a signed
release attestation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlopt.commands._common import ModelKeyOpt

EXAMPLES = """\
Examples:

  dlopt verify reports/digits_cnn

  dlopt verify out/cnn-int8/model.onnx

  dlopt verify --attestation reports/digits_cnn/attestation.json --public-key release.pub \\
      reports/digits_cnn/artifacts/int8-static/model.onnx

  DLOPT_MODEL_KEY=model.key dlopt verify reports/digits_cnn

Exit 0 when everything matches; 1 naming the first file that does not (a changed byte, a
missing or extra file, a swapped parent, an edited manifest, a bad signature, an artifact the
gate did not pass); 2 for bad input (no such path, an unreadable key, a wrong model key).
"""


def verify(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="An artifact, a manifest (.dlopt.json) or a folder (an output or gate report "
            "folder); with --attestation, the artifact files to check.",
            show_default=False,
        ),
    ],
    attestation: Annotated[
        Path | None,
        typer.Option(help="A signed attestation.json from `dlopt gate --sign-key`."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="The release key's public half (keygen's .pub)."),
    ] = None,
    key_file: ModelKeyOpt = None,
    no_parents: Annotated[
        bool,
        typer.Option("--no-parents", help="Check the files only, not their parent chain."),
    ] = False,
) -> None:
    """Re-hash artifacts against their manifests and walk each parent chain to the source.

    With --attestation and --public-key: check the attestation's signature, then that each
    file's sha256 is an artifact that passed the gate (for a deploy job).
    """
    from rich.console import Console

    from dlopt.errors import ConfigError
    from dlopt.trust.keys import load_model_key

    out = Console()
    if attestation is not None:
        if public_key is None:
            raise ConfigError("--attestation needs --public-key", "give the release key's .pub")
        _verify_attestation(attestation, public_key, paths)
        return
    model_key = load_model_key(key_file)
    from dlopt.trust.verify import verify_path

    for path in paths:
        report = verify_path(path, model_key, follow_parents=not no_parents)
        for checked in report.checked:
            out.print(f"[green]ok[/green]    {checked}")
        for note in report.notes:
            out.print(f"[yellow]note[/yellow]  {note}")
        report.raise_for_problems()
    out.print(f"verified: every artifact matches its manifest ({len(paths)} path(s))")


def _verify_attestation(attestation: Path, public_key: Path, paths: list[Path]) -> None:
    import json

    from dlopt.errors import ArtifactError
    from dlopt.gate.attestation import check_subject, open_envelope
    from dlopt.trust.keys import load_public_key

    key = load_public_key(public_key)
    try:
        envelope = json.loads(attestation.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(
            f"cannot read attestation {attestation}: {type(error).__name__}",
            "give the attestation.json the gate wrote",
        ) from error
    statement = open_envelope(envelope, key, str(attestation))
    for path in paths:
        if not path.is_file():
            raise ArtifactError(f"{path} is not a file", "give the artifact files to deploy")
        name = check_subject(statement, path, str(attestation))
        print(f"ok    {path}: passed the gate as {name} (signature verified)")
