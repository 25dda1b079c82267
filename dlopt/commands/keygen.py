"""`dlopt keygen`: a release signing key pair, or a model encryption key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXAMPLES = """\
Examples:

  dlopt keygen -o keys/release.key          # writes keys/release.key (0600) and release.key.pub

  dlopt keygen --model-key -o keys/model.key

  dlopt gate models/digits_cnn/dlopt.toml --sign-key keys/release.key

Keep the private key out of the repository (a CI secret: DLOPT_SIGN_KEY may hold the PEM
itself); give deploy jobs only the .pub. An existing file is never overwritten (exit 2).
"""


def keygen(
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The key file to create (it must not exist)."),
    ],
    model_key: Annotated[
        bool,
        typer.Option(
            "--model-key",
            help="Make an AES-256 model encryption key (for `dlopt encrypt`) instead of an "
            "Ed25519 signing key pair (for `dlopt gate --sign-key`).",
        ),
    ] = False,
) -> None:
    """Write a new Ed25519 signing key pair, or (--model-key) an AES-256 encryption key.

    Private keys are created with mode 0600; only a key id (a hash) is ever printed.
    """
    from dlopt.trust.keys import (
        model_key_id,
        parse_model_key,
        write_model_key,
        write_signing_key_pair,
    )

    if model_key:
        path = write_model_key(output)
        key_id = model_key_id(parse_model_key(path.read_text(), str(path)))
        print(f"wrote model key {path} (mode 0600, key id {key_id})")
        return
    from dlopt.gate.attestation import key_id as signing_key_id
    from dlopt.trust.keys import load_public_key

    private_path, public_path = write_signing_key_pair(output)
    print(f"wrote signing key {private_path} (mode 0600) and public key {public_path}")
    print(f"key id {signing_key_id(load_public_key(public_path))}")
