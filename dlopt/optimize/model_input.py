"""The model a step starts from: an ONNX file with its manifest, or a torch model loaded in
memory, with its input specs and output names (shared by `build` and `quantize --target torch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.errors import SourceError
from dlopt.specs import TensorSpec


@dataclass
class ModelInput:
    """A resolved model source: an ONNX file, or a torch model in memory, with its specs."""

    kind: str  # onnx | torch
    text: str
    specs: list[TensorSpec]
    output_names: list[str] | None
    path: Path | None = None
    manifest: dict[str, Any] | None = None
    loaded: Any = None  # dlopt.sources.LoadedModel for torch sources


def resolve_model_input(
    source: str,
    weights: Path | None = None,
    input_specs: Sequence[str] = (),
    allow_pickle: bool = False,
) -> ModelInput:
    """The source as an ONNX file or a loaded torch model, with input specs and output names.

    Input specs: `--input` when given, else the ONNX manifest's (or the graph's), else the
    model file's DLOPT_INPUTS. Raises SourceError, InputSpecError, BuildError.
    """
    from dlopt.sources import onnx_input_specs, parse_source
    from dlopt.specs import parse_input_specs

    ref = parse_source(source)
    if ref.kind == "onnx" and ref.path is not None:
        from dlopt.artifacts import read_manifest

        manifest = read_manifest(ref.path)
        if input_specs:
            specs = parse_input_specs(input_specs)
        elif manifest and manifest.get("inputs"):
            specs = [TensorSpec.from_dict(item) for item in manifest["inputs"]]
        else:
            specs = onnx_input_specs(ref.path)
        outputs = list(manifest.get("outputs", [])) if manifest else None
        return ModelInput("onnx", source, specs, outputs or None, ref.path, manifest)
    if ref.kind == "openvino_ir":
        raise SourceError(
            f"{source} is already an OpenVINO IR",
            "build from the ONNX file or the torch model it came from",
        )
    from dlopt.optimize.export import resolve_input_specs
    from dlopt.sources import load_torch_model
    from dlopt.specs import random_feed
    from dlopt.torch_io import output_names

    loaded = load_torch_model(source, weights, allow_pickle=allow_pickle)
    specs = resolve_input_specs(input_specs, loaded)
    names = output_names(loaded.module, random_feed(specs), specs)
    return ModelInput("torch", source, specs, names, ref.path, None, loaded)


def parent_record(model: ModelInput) -> dict[str, Any]:
    """The manifest's `parent` block: what the engine was built from."""
    record: dict[str, Any] = {"source": model.text, "kind": model.kind}
    if model.path is not None and model.path.is_file():
        from dlopt.artifacts import sha256_file

        record["path"] = str(model.path.resolve())  # written relative (dlopt.trust.provenance)
        record["sha256"] = sha256_file(model.path)
    if model.manifest:
        record["precision"] = model.manifest.get("precision")
        record["recipe"] = model.manifest.get("recipe")
    return record
