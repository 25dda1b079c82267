"""TorchScript export (trace by default, or script), reloaded and checked for parity with the
torch model at several shapes."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from dlopt.artifacts import manifest_path, move_staging_into_place, staging_dir, write_manifest
from dlopt.errors import ExportError, first_line
from dlopt.optimize.export.options import (
    ExportOptions,
    ExportResult,
    Progress,
    export_manifest,
)
from dlopt.optimize.export.parity import check_parity
from dlopt.sources import LoadedModel
from dlopt.specs import TensorSpec, random_feed


def export_torchscript(
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
                f"{first_line(error, root_cause=True)}",
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
        manifest = export_manifest(
            "torchscript",
            final_path,
            loaded,
            specs,
            output_names,
            parity,
            recipe={"mode": options.torchscript_mode},
        )
        write_manifest(staged, manifest)
        move_staging_into_place(staging, output_dir)
    return ExportResult(
        "torchscript",
        final_path,
        manifest_path(final_path),
        parity,
        {"mode": options.torchscript_mode},
    )
