"""ONNX export (torch.onnx, the dynamo exporter by default), checked by onnx.checker and for
parity with the torch model on ONNX Runtime at several shapes."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.artifacts import manifest_path, move_staging_into_place, staging_dir, write_manifest
from dlopt.errors import ExportError, first_line
from dlopt.optimize.export.options import (
    EXTERNAL_DATA_THRESHOLD_BYTES,
    ExportOptions,
    ExportResult,
    Progress,
    export_manifest,
)
from dlopt.optimize.export.parity import check_parity
from dlopt.optimize.onnx_value_info import clear_value_info
from dlopt.optimize.runners import onnx_runner
from dlopt.sources import LoadedModel
from dlopt.specs import TensorSpec, random_feed


def export_onnx(
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
            with quiet_exporter(), torch.no_grad():
                _run_onnx_exporter(
                    wrapper, example, staged, specs, output_names, options, external_data
                )
        except ExportError:
            raise
        except Exception as error:
            raise ExportError(
                f"the {options.exporter} ONNX exporter failed on {loaded.ref.text}: "
                f"{first_line(error, root_cause=True)}",
                "try the other exporter (--exporter legacy or --exporter dynamo)",
            ) from error
        clear_value_info(staged)  # ORT's slow SkipLayerNormalization fusion needs it
        say("checking the ONNX graph")
        try:
            onnx.checker.check_model(str(staged), full_check=True)
        except Exception as error:
            raise ExportError(
                f"onnx.checker rejects the exported model: {first_line(error, root_cause=True)}",
                "try the other exporter (--exporter legacy or --exporter dynamo)",
            ) from error
        model_proto = onnx.load(str(staged), load_external_data=False)
        opset = next(
            (o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), None
        )
        say("checking parity with ONNX Runtime at several shapes")
        parity = check_parity(
            reference, onnx_runner(staged), specs, options.tolerance, seed=options.seed
        )
        manifest = export_manifest(
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
        move_staging_into_place(staging, output_dir)
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


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
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
