"""Export a torch model to ONNX and TorchScript, each checked for parity with the original.

Public entry point: `export_model`. Each format is written to a staging folder first, checked
(ONNX checker, shape inference, parity at several shapes), then moved into place with its
manifest. A parity failure still leaves the artifact (for debugging), marked `failed` in its
manifest, and raises ExportError naming the output and shape that diverged.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.artifacts import (
    Manifest,
    manifest_path,
    move_into_place,
    staging_dir,
    write_manifest,
)
from dlopt.errors import ExportError, InputSpecError
from dlopt.optimize.parity import ParityReport, Tolerance, check_parity
from dlopt.provenance import source_record
from dlopt.sources import LoadedModel, load_torch_model
from dlopt.specs import SPEC_HELP, TensorSpec, parse_input_specs, random_feed

FORMATS = ("onnx", "torchscript")
EXPORTERS = ("dynamo", "legacy")
TORCHSCRIPT_MODES = ("trace", "script")
# The protobuf limit is 2 GiB; leave headroom for the graph itself.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """How to export. Validated on creation."""

    formats: tuple[str, ...] = FORMATS
    opset: int | None = None
    exporter: str = "dynamo"
    torchscript_mode: str = "trace"
    tolerance: Tolerance | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.exporter, EXPORTERS, "exporter"),
            (self.torchscript_mode, TORCHSCRIPT_MODES, "TorchScript mode"),
        ):
            if value not in allowed:
                raise ExportError(f"unknown {what} {value!r}", f"use one of {', '.join(allowed)}")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise ExportError(
                    f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}, all"
                )
        if self.opset is not None and not 7 <= self.opset <= 30:
            raise ExportError(f"opset {self.opset} is out of range", "use an opset from 7 to 30")


@dataclass
class ExportResult:
    """One exported artifact and its parity check."""

    format: str
    path: Path
    manifest_path: Path
    parity: ParityReport
    details: dict[str, Any] = field(default_factory=dict)


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
        exporter = _export_onnx if fmt == "onnx" else _export_torchscript
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


def _export_onnx(
    loaded: LoadedModel,
    specs: Sequence[TensorSpec],
    output_names: Sequence[str],
    output_dir: Path,
    options: ExportOptions,
    reference: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    say: Progress,
) -> ExportResult:
    import onnx
    import torch

    from dlopt.torch_io import FlatIOModule, to_tensors

    wrapper = FlatIOModule(loaded.module, [spec.name for spec in specs])
    # torch.export specializes dynamic axes whose example size is 0 or 1; trace with >= 2.
    trace_sizes = {dim.axis: max(2, dim.size) for spec in specs for dim in spec.dims if dim.axis}
    example = to_tensors(random_feed(specs, trace_sizes, seed=options.seed), specs)
    parameter_bytes = sum(p.numel() * p.element_size() for p in loaded.module.parameters())
    external_data = parameter_bytes > EXTERNAL_DATA_THRESHOLD_BYTES
    final_path = output_dir / "model.onnx"
    with staging_dir(output_dir) as staging:
        staged = staging / "model.onnx"
        try:
            with _quiet_exporter(), torch.no_grad():
                _run_onnx_exporter(
                    wrapper, example, staged, specs, output_names, options, external_data
                )
        except ExportError:
            raise
        except Exception as error:
            raise ExportError(
                f"the {options.exporter} ONNX exporter failed on {loaded.ref.text}: "
                f"{_first_line(error)}",
                "try the other exporter (--exporter legacy or --exporter dynamo)",
            ) from error
        say("checking the ONNX graph")
        try:
            onnx.checker.check_model(str(staged), full_check=True)
        except Exception as error:
            raise ExportError(
                f"onnx.checker rejects the exported model: {_first_line(error)}",
                "try the other exporter (--exporter legacy or --exporter dynamo)",
            ) from error
        model_proto = onnx.load(str(staged), load_external_data=False)
        opset = next(
            (o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), None
        )
        say("checking parity with ONNX Runtime at several shapes")
        parity = check_parity(
            reference, _onnx_runner(staged), specs, options.tolerance, seed=options.seed
        )
        manifest = _manifest(
            "onnx",
            final_path,
            loaded,
            specs,
            output_names,
            parity,
            recipe={
                "exporter": options.exporter,
                "opset_requested": options.opset,
                "external_data": external_data,
            },
            opset=opset,
        )
        write_manifest(staged, manifest)
        _move_into_place(staging, output_dir)
    return ExportResult(
        "onnx",
        final_path,
        manifest_path(final_path),
        parity,
        {"opset": opset, "exporter": options.exporter},
    )


def _run_onnx_exporter(
    wrapper: Any,
    example: tuple[Any, ...],
    path: Path,
    specs: Sequence[TensorSpec],
    output_names: Sequence[str],
    options: ExportOptions,
    external_data: bool,
) -> None:
    import torch

    input_names = [spec.name for spec in specs]
    if options.exporter == "dynamo":
        axis_dims = {
            dim.axis: torch.export.Dim(dim.axis) for spec in specs for dim in spec.dims if dim.axis
        }
        # FlatIOModule.forward takes *inputs: the shapes of all inputs sit under that one name.
        dynamic_shapes = (
            tuple(
                {index: axis_dims[axis] for index, axis in spec.dynamic_axes.items()} or None
                for spec in specs
            ),
        )
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=input_names,
            output_names=list(output_names),
            opset_version=options.opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            external_data=external_data,
        )
        _name_dynamic_dims(path, specs, external_data)
    else:
        dynamic_axes = {spec.name: spec.dynamic_axes for spec in specs if spec.dynamic_axes}
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=input_names,
            output_names=list(output_names),
            opset_version=options.opset or 17,
            dynamo=False,
            dynamic_axes=dynamic_axes,
        )


def _name_dynamic_dims(path: Path, specs: Sequence[TensorSpec], external_data: bool) -> None:
    """Give the graph inputs' dynamic dims the spec's axis names (the exporter says s0, s1)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    renames: dict[str, str] = {}
    by_name = {spec.name: spec for spec in specs}
    for graph_input in model.graph.input:
        spec = by_name.get(graph_input.name)
        if spec is None:
            continue
        for index, dim in enumerate(graph_input.type.tensor_type.shape.dim):
            axis = spec.dynamic_axes.get(index)
            if axis and dim.dim_param:
                renames.setdefault(dim.dim_param, axis)
    if not renames:
        return
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
    onnx.save(model, str(path))


def _onnx_runner(path: Path) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]

    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, dict(feed)), strict=True))

    return run


def _export_torchscript(
    loaded: LoadedModel,
    specs: Sequence[TensorSpec],
    output_names: Sequence[str],
    output_dir: Path,
    options: ExportOptions,
    reference: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]],
    say: Progress,
) -> ExportResult:
    import torch

    from dlopt.torch_io import FlatIOModule, run_torch, to_tensors

    final_path = output_dir / "model.ts"
    with staging_dir(output_dir) as staging:
        staged = staging / "model.ts"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if options.torchscript_mode == "script":
                    scripted = torch.jit.script(loaded.module)
                else:
                    wrapper = FlatIOModule(loaded.module, [spec.name for spec in specs])
                    example = to_tensors(random_feed(specs, seed=options.seed), specs)
                    scripted = torch.jit.trace(wrapper, example, check_trace=False)
                torch.jit.save(scripted, str(staged))
        except Exception as error:
            other = "script" if options.torchscript_mode == "trace" else "trace"
            raise ExportError(
                f"TorchScript {options.torchscript_mode} failed on {loaded.ref.text}: "
                f"{_first_line(error)}",
                f"try --torchscript-mode {other}, or export to ONNX only (--format onnx)",
            ) from error
        say("checking TorchScript parity at several shapes")
        reloaded = torch.jit.load(str(staged), map_location="cpu").eval()
        parity = check_parity(
            reference,
            lambda feed: run_torch(reloaded, feed, specs, names=output_names),
            specs,
            options.tolerance,
            seed=options.seed,
        )
        manifest = _manifest(
            "torchscript",
            final_path,
            loaded,
            specs,
            output_names,
            parity,
            recipe={"mode": options.torchscript_mode},
        )
        write_manifest(staged, manifest)
        _move_into_place(staging, output_dir)
    return ExportResult(
        "torchscript",
        final_path,
        manifest_path(final_path),
        parity,
        {"mode": options.torchscript_mode},
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporters' progress prints and warnings off the user's terminal."""
    import logging

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _move_into_place(staging: Path, output_dir: Path) -> None:
    # Everything in staging (external data and the manifest included), the model file last.
    files = sorted(staging.iterdir(), key=lambda path: path.suffix in (".onnx", ".ts"))
    move_into_place(files, output_dir)


def _manifest(
    fmt: str,
    path: Path,
    loaded: LoadedModel,
    specs: Sequence[TensorSpec],
    output_names: Sequence[str],
    parity: ParityReport,
    recipe: dict[str, Any],
    opset: int | None = None,
) -> Manifest:
    return Manifest(
        format=fmt,
        file=path.name,
        precision="fp32",
        status="ok" if parity.passed else "failed",
        inputs=[spec.to_dict() for spec in specs],
        outputs=list(output_names),
        opset=opset,
        source=source_record(loaded),
        recipe={"step": "export", "format": fmt, **recipe},
        checks={"parity": parity.to_dict()},
    )


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


def _first_line(error: BaseException) -> str:
    """The first line of the innermost cause, without terminal colour codes."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (f"{type(error).__name__}: " if lines else type(error).__name__) + (
        lines[0][:240] if lines else ""
    )
