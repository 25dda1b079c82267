"""`dlopt export`: a torch model to ONNX and TorchScript, parity-checked."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dlopt.commands._common import (
    HfTaskOpt,
    InputOpt,
    KeepDebugMetadataOpt,
    SourceArg,
    TrustPickleOpt,
    WeightsOpt,
)

EXAMPLES = """\
Examples:

  dlopt export models/digits_cnn/model.py:create_model -w models/digits_cnn/weights.pt

  dlopt export my_pkg.nets:build --input image:batch=1x3x224x224 --format onnx -o out/net

  dlopt export net.py:build -i input_ids:batch=2xseq=64:int64:0..999 \\
      -i attention_mask:batch=2xseq=64:int64:1..1 --exporter legacy

  dlopt export hf:models/minilm --task feature-extraction --format onnx

  dlopt export torchvision:resnet50 --weights resnet50.safetensors -o out/resnet50
"""


class FormatChoice(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    all = "all"


class ExporterChoice(str, Enum):
    dynamo = "dynamo"
    legacy = "legacy"


class TorchScriptModeChoice(str, Enum):
    trace = "trace"
    script = "script"


def export(
    source: SourceArg,
    input_specs: InputOpt = None,
    weights: WeightsOpt = None,
    format: Annotated[FormatChoice, typer.Option("--format", "-f", help="What to export.")] = (
        FormatChoice.all
    ),
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder. Default: out/<model name>."),
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset. Default: the exporter's.")] = None,
    exporter: Annotated[
        ExporterChoice,
        typer.Option(
            help="ONNX exporter: torch.export-based (dynamo) or the TorchScript-based "
            "legacy one, for models that export with only one of them."
        ),
    ] = ExporterChoice.dynamo,
    torchscript_mode: Annotated[
        TorchScriptModeChoice, typer.Option(help="TorchScript by tracing or by scripting.")
    ] = TorchScriptModeChoice.trace,
    atol: Annotated[
        float | None,
        typer.Option(help="Parity: absolute tolerance (default per dtype; fp32 1e-4)."),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(help="Parity: relative tolerance (default per dtype; fp32 1e-3)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random parity inputs.")] = 0,
    trust_pickle: TrustPickleOpt = False,
    keep_debug_metadata: KeepDebugMetadataOpt = False,
    task: HfTaskOpt = None,
) -> None:
    """Export a PyTorch model to ONNX and/or TorchScript and check parity at several shapes.

    The export fails (exit 2) when the exported model differs from the torch model beyond
    tolerance at the example shape or at a smaller or larger size of any dynamic axis; the
    artifact is kept for debugging and marked failed in its manifest.
    """
    from rich.console import Console

    from dlopt.hf_source import with_task
    from dlopt.optimize.export import ExportOptions, export_model
    from dlopt.optimize.export.parity import DEFAULT_TOLERANCES, Tolerance
    from dlopt.path_safety import check_outputs

    source = with_task(source, task.value if task else None)
    output_dir = output_dir or default_output_dir(source)
    check_outputs([source, weights], folders=[output_dir])

    tolerance = None
    if atol is not None or rtol is not None:
        default = DEFAULT_TOLERANCES["float32"]
        tolerance = Tolerance(
            atol if atol is not None else default.atol, rtol if rtol is not None else default.rtol
        )
    options = ExportOptions(
        formats=("onnx", "torchscript") if format is FormatChoice.all else (format.value,),
        opset=opset,
        exporter=exporter.value,
        torchscript_mode=torchscript_mode.value,
        tolerance=tolerance,
        seed=seed,
    )
    console = Console(stderr=True)
    with console.status("exporting") as status:
        results = export_model(
            source,
            output_dir,
            input_specs or [],
            weights,
            options,
            allow_pickle=trust_pickle,
            progress=lambda message: status.update(message),
        )
    from rich.markup import escape

    from dlopt.commands._tables import parity_table, stripped_note

    out = Console()
    for result in results:
        out.print(parity_table(result))
        out.print(
            f"[green]wrote[/green] {escape(str(result.path))}  "
            f"(manifest {escape(result.manifest_path.name)})"
        )
        out.print(stripped_note(result.manifest_path))


def default_output_dir(source: str) -> Path:
    """out/<name>: the model file's folder for `.../model.py:factory`, else the file's stem;
    the folder's name for `hf:FOLDER`, the model's for `torchvision:NAME`."""
    if source.startswith("hf:"):
        return Path("out") / (Path(source[3:].partition("#")[0]).resolve().name or "model")
    if source.startswith("torchvision:"):
        return Path("out") / (source.split(":", 1)[1] or "model")
    target = source.rsplit(":", 1)[0] if source.count(":") and not Path(source).exists() else source
    path = Path(target)
    if path.suffix == ".py" or "/" in target:
        name = path.parent.name if path.stem in ("model", "models", "__init__") else path.stem
    else:
        name = target.split(".")[-1]
    return Path("out") / (name or "model")
