"""`dlopt encrypt`: an AES-256-GCM encrypted copy of an artifact, with its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlopt.commands._common import ModelKeyOpt

EXAMPLES = """\
Examples:

  dlopt keygen --model-key -o model.key
  dlopt encrypt out/cnn/model.onnx --key-file model.key -o out/cnn-enc
  dlopt bench out/cnn-enc/model.onnx.enc --key-file model.key -b onnxruntime -b openvino

  DLOPT_MODEL_KEY=model.key dlopt encrypt out/cnn-ov/model.xml -o out/cnn-ov-enc
"""


def encrypt(
    artifact: Annotated[
        Path,
        typer.Argument(
            help="The artifact: .onnx, OpenVINO .xml (its .bin goes in too), TorchScript or .pt2.",
            show_default=False,
        ),
    ],
    key_file: ModelKeyOpt = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder. Default: the artifact's folder."),
    ] = None,
) -> None:
    """Write ARTIFACT.enc: the model's files in one AES-256-GCM container (a header naming the
    format, version and key id, authenticated with the ciphertext) and its manifest.

    bench, gate and verify run it with the key, decrypting in memory only; the plaintext is
    left as it was (delete it yourself once the copy is verified).
    """
    from dlopt.errors import ArtifactError, KeyFileError
    from dlopt.trust.encryption import encrypt_artifact
    from dlopt.trust.keys import load_model_key, model_key_id

    if not artifact.is_file():
        raise ArtifactError(f"{artifact} is not a file", "give the model file to encrypt")
    key = load_model_key(key_file)
    if key is None:
        raise KeyFileError(
            "no key given", "pass --key-file KEY or set DLOPT_MODEL_KEY (dlopt keygen --model-key)"
        )
    written = encrypt_artifact(artifact, key, output_dir or artifact.parent)
    print(
        f"wrote {written} (AES-256-GCM, key id {model_key_id(key)}; manifest {written.name}"
        ".dlopt.json)"
    )
