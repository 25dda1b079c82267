"""Encrypted artifacts for the backends: decrypted into memory, never onto disk.

Each runtime loads from bytes: ONNX Runtime `InferenceSession(model_bytes)`, OpenVINO
`Core.read_model(model=xml_bytes, weights=ov.Tensor(bin))`, TorchScript
`torch.jit.load(io.BytesIO(...))`, an ExportedProgram `torch.export.load(io.BytesIO(...))`
after the same safety checks as a file (dlopt.trust.pickle_safety).
"""

from __future__ import annotations

import io
from typing import Any

from dlopt.backends.base import ArtifactInfo, LoadOptions
from dlopt.errors import KeyFileError


def decrypted_members(artifact: ArtifactInfo, options: LoadOptions) -> dict[str, bytes]:
    """The artifact's files, decrypted in memory (the model file first)."""
    from dlopt.trust.encryption import decrypt_file

    if options.model_key is None:
        raise KeyFileError(
            f"{artifact.text} is encrypted and no key was given",
            "pass --key-file KEY or set DLOPT_MODEL_KEY",
        )
    assert artifact.path is not None
    return decrypt_file(artifact.path, options.model_key)


def openvino_model(core: Any, artifact: ArtifactInfo, options: LoadOptions) -> Any:
    """An `ov.Model` read from decrypted bytes (IR: the .xml and its .bin; or ONNX)."""
    import numpy as np
    import openvino as ov

    members = list(decrypted_members(artifact, options).values())
    weights = members[1] if len(members) > 1 else b""
    tensor = ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy())
    return core.read_model(model=members[0], weights=tensor)


def torch_module(artifact: ArtifactInfo, options: LoadOptions) -> Any:
    """A TorchScript module or an ExportedProgram's module from decrypted bytes."""
    import torch

    data = next(iter(decrypted_members(artifact, options).values()))
    if artifact.format == "exported_program":
        from dlopt.trust.pickle_safety import check_exported_program

        if not options.allow_pickle:
            check_exported_program(data, artifact.text)
        return torch.export.load(io.BytesIO(data)).module()
    return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
