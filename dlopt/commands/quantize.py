"""`dlopt quantize`: INT8 ONNX for ONNX Runtime, then a speed check against the FP32 parent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlopt.commands._common import report_errors

EXAMPLES = """\
Examples:

  dlopt quantize out/digits_cnn/model.onnx --mode static \\
      --calibration models/digits_cnn/data.py:calibration -o out/digits_cnn_int8

  dlopt quantize out/text_transformer/model.onnx --mode dynamic -o out/text_int8

  dlopt quantize out/cnn/model.onnx --calibration calib.npz --method entropy --exclude Gemm
"""


@report_errors
def quantize(
    model: Annotated[str, typer.Argument(help="The FP32 ONNX model (e.g. from dlopt export).")],
    mode: Annotated[str, typer.Option(help="dynamic or static (U8S8 QDQ, needs calibration).")] = (
        "static"
    ),
    target: Annotated[
        str,
        typer.Option(
            help="onnxruntime. (OpenVINO INT8: dlopt build --backend openvino --precision int8.)"
        ),
    ] = "onnxruntime",
    calibration: Annotated[
        str | None, typer.Option(help="Calibration data: .npz, .npy folder, file.py:function.")
    ] = None,
    calibration_size: Annotated[int, typer.Option(help="Calibration samples.")] = 300,
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="Per-channel weight scales.")
    ] = True,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Keep this node (by name) or op type in float; repeatable."),
    ] = None,
    speed_check: Annotated[
        bool,
        typer.Option(
            "--speed-check/--no-speed-check",
            help="Bench against the FP32 parent, interleaved, and print the speedup.",
        ),
    ] = True,
    output_dir: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output folder. Default: out/<name>_int8.")
    ] = None,
) -> None:
    """Quantize an FP32 ONNX model to INT8 with onnxruntime.quantization.

    Static: QDQ with QUInt8 activations and QInt8 weights (U8S8: ORT's default S8S8 runs slower
    than FP32 on x86), calibrated on --calibration. Dynamic: QInt8 weights, per channel. Then
    benches the result against its parent on ONNX Runtime, interleaved, and prints the speedup
    with its 95% interval; says so loudly when it is not faster.
    """
    from rich.console import Console

    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    options = QuantizeOptions(
        mode=mode,
        target=target,
        calibration=calibration,
        calibration_size=calibration_size,
        method=method,
        per_channel=per_channel,
        exclude=tuple(exclude or ()),
    )
    folder = output_dir or Path("out") / f"{Path(model).parent.name or 'model'}_int8"
    console = Console(stderr=True)
    with console.status("quantizing") as status:
        result = quantize_model(model, folder, options, progress=status.update)
    Console().print(f"[green]wrote[/green] {result.path}  (manifest {result.manifest_path.name})")
    if speed_check:
        _speed_check(model, result.path, folder / "speed_check", console)


def _speed_check(parent: str, quantized: Path, folder: Path, console: object) -> None:
    from rich.console import Console

    from dlopt.harness.bench import BenchSettings, run_bench

    out = Console()
    with Console(stderr=True).status("speed check against the FP32 parent"):
        report = run_bench(
            [parent, str(quantized)],
            BenchSettings(backends=("onnxruntime",), reference=parent, min_time_s=2.0),
            folder,
        )
    row = report.row(str(quantized), "onnxruntime")
    ratio = row.latency_ratio_to_reference
    if row.status != "ok" or not ratio:
        out.print(f"[red]speed check failed[/red]: {row.reason}")
        return
    low, high = ratio["ci95"]
    speedup, slow, fast = 1 / ratio["median_ratio"], 1 / high, 1 / low
    if fast < 1.0:
        out.print(
            f"[bold red]NOT FASTER[/bold red]: the INT8 model runs at {speedup:.2f}x the "
            f"FP32 speed [{slow:.2f}, {fast:.2f}] on ONNX Runtime"
        )
    else:
        out.print(
            f"speedup on ONNX Runtime: {speedup:.2f}x [95% CI {slow:.2f}, {fast:.2f}] "
            "(interleaved with the FP32 parent)"
        )
