"""Export a torch model to ONNX and TorchScript, each checked for parity with the original.

Public entry point: `export_model`. Each format (`onnx.py`, `torchscript.py`) is written to a
staging folder first, checked (ONNX checker, shape inference, parity at several shapes), then
moved into place with its manifest. A parity failure still leaves the artifact (for debugging),
marked `failed` in its manifest, and raises ExportError naming the output and shape that
diverged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.errors import ExportError, InputSpecError
from dlopt.optimize.export.onnx import export_onnx
from dlopt.optimize.export.options import ExportOptions, ExportResult, Progress
from dlopt.optimize.export.torchscript import export_torchscript
from dlopt.sources import LoadedModel, load_torch_model
from dlopt.specs import SPEC_HELP, TensorSpec, parse_input_specs, random_feed

__all__ = ["ExportOptions", "ExportResult", "export_loaded_model", "export_model"]


def export_model(
    source: str,
    output_dir: Path,
    input_specs: Sequence[str] = (),
    weights: Path | None = None,
    options: ExportOptions | None = None,
    allow_pickle: bool = False,
    progress: Progress | None = None,
) -> list[ExportResult]:
    """Export `source` to the requested formats in `output_dir`; returns one result per format.

    Raises SourceError/WeightsError/InputSpecError for bad input and ExportError when an
    export fails or diverges from the original.
    """
    options = options or ExportOptions()
    say = progress or (lambda message: None)
    say(f"loading {source}")
    loaded = load_torch_model(source, weights, allow_pickle=allow_pickle)
    specs = resolve_input_specs(input_specs, loaded)
    return export_loaded_model(loaded, specs, output_dir, options, say)


def export_loaded_model(
    loaded: LoadedModel,
    specs: Sequence[TensorSpec],
    output_dir: Path,
    options: ExportOptions | None = None,
    progress: Progress | None = None,
) -> list[ExportResult]:
    """Export a model already in memory (e.g. a pruned one) with its input specs.

    The same steps, checks and errors as `export_model`; `loaded.ref` names the model in
    manifests and messages.
    """
    options = options or ExportOptions()
    say = progress or (lambda message: None)
    reference = _reference_runner(loaded.module, specs)
    names = list(reference(random_feed(specs, seed=options.seed)))
    results: list[ExportResult] = []
    for fmt in options.formats:
        say(f"exporting to {fmt}")
        exporter = export_onnx if fmt == "onnx" else export_torchscript
        results.append(exporter(loaded, specs, names, output_dir, options, reference, say))
    failures = [result for result in results if not result.parity.passed]
    if failures:
        raise ExportError(_parity_failure_message(failures[0]), _parity_hint(failures[0]))
    return results


def resolve_input_specs(texts: Sequence[str], loaded: LoadedModel) -> list[TensorSpec]:
    """Input specs from the command line, else the model file's DLOPT_INPUTS; checked by a run."""
    specs = parse_input_specs(texts) if texts else list(loaded.default_inputs)
    if not specs:
        raise InputSpecError(
            f"no input specs for {loaded.ref.text}",
            f"pass --input {SPEC_HELP}, or define DLOPT_INPUTS in the model file",
        )
    from dlopt.torch_io import run_torch

    try:
        run_torch(loaded.module, random_feed(specs), specs)
    except Exception as error:
        message = str(error).strip().splitlines()
        raise InputSpecError(
            f"{loaded.ref.text} fails on inputs {', '.join(map(str, specs))}: "
            f"{type(error).__name__}: {message[0][:200] if message else ''}",
            "check the names, shapes and dtypes given with --input",
        ) from error
    return specs


def _reference_runner(
    module: Any, specs: Sequence[TensorSpec]
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    from dlopt.torch_io import run_torch

    return lambda feed: run_torch(module, feed, specs)


def _parity_failure_message(result: ExportResult) -> str:
    row = result.parity.first_failure()
    if row is None:
        return f"{result.format} export of {result.path} could not be checked at any shape"
    if row.note:
        return f"{result.format} export diverges: output {row.output} at {row.shapes}: {row.note}"
    return (
        f"{result.format} export diverges from the torch model: output {row.output} at "
        f"{row.shapes} has max abs error {row.max_abs_error:.3g} (atol {row.atol:g}, "
        f"rtol {row.rtol:g}), cosine {row.cosine:.6f}; {result.path} is kept and marked failed"
    )


def _parity_hint(result: ExportResult) -> str:
    if result.format == "torchscript":
        return (
            "tracing may have baked a shape in: try --torchscript-mode script, "
            "or loosen --atol/--rtol"
        )
    return "try the other exporter (--exporter legacy or dynamo), or loosen --atol/--rtol"
