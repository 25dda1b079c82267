"""`dlopt build`: OpenVINO IR, TensorRT engines and torch-tensorrt programs."""

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

  dlopt build out/digits_cnn/model.onnx --backend openvino --precision fp16 -o out/digits_ov16

  dlopt build out/digits_cnn/model.onnx --backend openvino --precision int8 \\
      --calibration sample:digits_cnn:calibration -o out/digits_ov8

  dlopt build out/digits_cnn/model.onnx --backend openvino --static \\
      --shapes image:1x1x32x32 -o out/digits_ov_b1

  dlopt build out/digits_cnn/model.onnx --backend tensorrt --precision fp16 \\
      --shapes image:1x1x32x32/8x1x32x32/32x1x32x32 --timing-cache out/trt.cache

  dlopt build out/q/model.qdq.onnx --backend tensorrt --precision int8   # Q/DQ from
      # dlopt quantize --target tensorrt: TensorRT 11 has no INT8 calibration

TensorRT needs an NVIDIA GPU and `pip install 'dlopt[tensorrt]'`; without them the command
says what is missing and exits 2.
"""


class BackendChoice(str, Enum):
    openvino = "openvino"
    tensorrt = "tensorrt"
    torch_tensorrt = "torch-tensorrt"


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class HintChoice(str, Enum):
    f32 = "f32"
    bf16 = "bf16"
    f16 = "f16"


def build(
    source: SourceArg,
    backend: Annotated[
        BackendChoice, typer.Option("--backend", "-b", help="Engine to build.")
    ] = BackendChoice.openvino,
    precision: Annotated[
        PrecisionChoice,
        typer.Option(
            "--precision",
            "-p",
            help="fp32, fp16, or int8 (OpenVINO: NNCF with --calibration; TensorRT: from a Q/DQ "
            "ONNX made by `dlopt quantize --target tensorrt`).",
        ),
    ] = PrecisionChoice.fp32,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="Calibration data for OpenVINO INT8: .npz, folder of .npy, file.py:function, "
            "sample:NAME:calibration."
        ),
    ] = None,
    calibration_size: Annotated[
        int, typer.Option(help="Calibration samples used (at most).")
    ] = 300,
    shapes: Annotated[
        list[str] | None,
        typer.Option(
            "--shapes",
            help="NAME:MIN/OPT/MAX (shapes like 1x3x224x224), repeatable: the TensorRT "
            "optimization profile, or OpenVINO bounded dims. NAME:SHAPE is static. Default: "
            "dynamic axes from 1 to their example size, the batch axis up to 32.",
            show_default=False,
        ),
    ] = None,
    static: Annotated[
        bool, typer.Option("--static", help="OpenVINO: reshape every input to its OPT shape.")
    ] = False,
    compress_to_fp16: Annotated[
        bool | None,
        typer.Option(
            "--compress-to-fp16/--no-compress-to-fp16",
            help="OpenVINO: store IR weights as FP16. Default: only for --precision fp16.",
            show_default=False,
        ),
    ] = None,
    precision_hint: Annotated[
        HintChoice,
        typer.Option(help="OpenVINO INFERENCE_PRECISION_HINT recorded for compiling the IR."),
    ] = HintChoice.f32,
    workspace: Annotated[
        int | None, typer.Option("--workspace", help="TensorRT: workspace memory limit, MB.")
    ] = None,
    timing_cache: Annotated[
        Path | None,
        typer.Option(help="TensorRT: timing cache file, read if present and updated."),
    ] = None,
    allow_tf32: Annotated[
        bool, typer.Option(help="TensorRT: let FP32 engines use TF32 tensor cores.")
    ] = False,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder. Default: out/<model>_<backend>_<p>."),
    ] = None,
    input_specs: InputOpt = None,
    weights: WeightsOpt = None,
    trust_pickle: TrustPickleOpt = False,
    keep_debug_metadata: KeepDebugMetadataOpt = False,
    task: HfTaskOpt = None,
) -> None:
    """Build a deployment engine from an ONNX file or a torch model.

    OpenVINO: IR with explicitly chosen weight storage (FP32 unless fp16), INT8 through NNCF,
    checked against its source. TensorRT: a serialized engine from ONNX (strongly typed:
    precision comes from the ONNX graph), with an optimization profile, a reusable timing
    cache and the builder log; the manifest records the TensorRT version and the GPU.
    """
    from rich.console import Console
    from rich.markup import escape

    from dlopt.commands._tables import stripped_note
    from dlopt.commands.export import default_output_dir
    from dlopt.optimize.build import BuildOptions, build_engine
    from dlopt.path_safety import check_outputs

    options = BuildOptions(
        backend=backend.value,
        precision=precision.value,
        calibration=calibration,
        calibration_size=calibration_size,
        shapes=tuple(shapes or ()),
        static_shapes=static,
        workspace_mb=workspace,
        timing_cache=timing_cache,
        compress_to_fp16=compress_to_fp16,
        precision_hint=precision_hint.value,
        allow_tf32=allow_tf32,
    )
    from dlopt.hf_source import with_task
    from dlopt.text_data import resolve_tokenizer

    source = with_task(source, task.value if task else None)
    calibration = resolve_tokenizer(calibration, source)
    if output_dir is None:
        base = default_output_dir(source)
        output_dir = base.with_name(f"{base.name}_{backend.value}_{precision.value}")
    # The timing cache is read and updated on purpose; it is neither input nor output here.
    check_outputs([source, calibration, weights], folders=[output_dir])
    console = Console(stderr=True)
    with console.status("building") as status:
        result = build_engine(
            source,
            output_dir,
            options,
            weights=weights,
            input_specs=input_specs or [],
            allow_pickle=trust_pickle,
            progress=lambda message: status.update(message),
        )
    out = Console()
    for key, value in result.details.items():
        if key in ("parity", "checks", "quantization") or value in (None, {}, []):
            continue
        out.print(f"{key.replace('_', ' ')}: {_plain(value)}", markup=False)
    out.print(
        f"[green]wrote[/green] {escape(str(result.path))} ({result.backend}, {result.precision}; "
        f"manifest {result.manifest_path.name})"
    )
    out.print(stripped_note(result.manifest_path))


def _plain(value: object) -> str:
    """A detail as a person reads it: `A=1, B=x` for a mapping, `yes`/`no` for a flag."""
    if isinstance(value, dict):
        return ", ".join(f"{key}={_plain(item)}" for key, item in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(item) for item in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
