"""`dlopt quantize`: INT8, FP16 or bf16 artifacts for a target runtime, checked for drift against
the FP32 parent, then a speed check against it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dlopt.commands._common import KeepDebugMetadataOpt

if TYPE_CHECKING:
    from rich.console import Console

    from dlopt.optimize.quantize import QuantizeOptions

EXAMPLES = """\
Examples:

  dlopt quantize out/text_transformer/model.onnx \\
      --calibration sample:text_transformer:calibration \\
      --eval sample:text_transformer:evaluation      # --mode auto: the fastest within budget

  dlopt quantize out/digits_cnn/model.onnx --mode static \\
      --calibration models/digits_cnn/data.py:calibration -o out/digits_cnn_int8

  dlopt quantize out/text_transformer/model.onnx --mode dynamic -o out/text_int8

  dlopt quantize out/digits_cnn/model.onnx --target openvino \\
      --calibration models/digits_cnn/data.py:calibration \\
      --eval sample:digits_cnn:evaluation --max-drift accuracy_drop=0.01

  dlopt quantize out/digits_cnn/model.onnx --mode fp16 -o out/digits_cnn_fp16

  dlopt quantize models/text_transformer/model.py:create_model \\
      --weights models/text_transformer/weights.pt --target torch --mode dynamic
"""


class ModeChoice(str, Enum):
    """QuantizeOptions' MODES (tests/unit/test_cli.py checks they agree)."""

    auto = "auto"
    static = "static"
    dynamic = "dynamic"
    fp16 = "fp16"
    bf16 = "bf16"


class TargetChoice(str, Enum):
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    tensorrt = "tensorrt"
    torch = "torch"


class MethodChoice(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class ModelTypeChoice(str, Enum):
    auto = "auto"
    transformer = "transformer"
    other = "other"


def quantize(
    model: Annotated[
        str,
        typer.Argument(
            help="The FP32 ONNX model (e.g. from dlopt export); for --target torch a torch "
            "source (file.py:factory with --weights)."
        ),
    ],
    mode: Annotated[
        ModeChoice,
        typer.Option(
            help="auto (default: tries static, with --calibration, and dynamic INT8 (on "
            "transformers also dynamic after SmoothQuant), each within the budget, times them "
            "against FP32 interleaved and keeps the fastest), "
            "static (INT8, needs --calibration), dynamic (INT8 weights), fp16 or bf16."
        ),
    ] = ModeChoice.auto,
    target: Annotated[
        TargetChoice,
        typer.Option(
            help="onnxruntime (U8S8 QDQ), tensorrt (S8S8 Q/DQ ONNX, or FP16 ONNX), openvino "
            "(NNCF INT8 IR; fp16/bf16 IRs), torch (dynamic INT8 TorchScript with the "
            "DEPRECATED torch.ao.quantization)."
        ),
    ] = TargetChoice.onnxruntime,
    calibration: Annotated[
        str | None,
        typer.Option(
            help="Calibration data: .npz, .npy folder, file.py:function, text:FILE.txt|.jsonl "
            "(tokenized with the model's tokenizer), sample:NAME."
        ),
    ] = None,
    calibration_size: Annotated[int, typer.Option(help="Calibration samples.")] = 300,
    method: Annotated[
        MethodChoice, typer.Option(help="Calibration method (ONNX targets).")
    ] = MethodChoice.minmax,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="Per-channel weight scales.")
    ] = True,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            help="Keep this node (by name) or op type in float; repeatable. ONNX targets: "
            "ONNX names/op types (Gemm); openvino: OpenVINO ones (MatMul)."
        ),
    ] = None,
    evaluation: Annotated[
        str | None,
        typer.Option(
            "--eval",
            help="Data to measure drift on (default: the calibration data). Labels enable "
            "accuracy_drop.",
        ),
    ] = None,
    evaluation_size: Annotated[int, typer.Option("--eval-size", help="Evaluation samples.")] = 300,
    max_drift: Annotated[
        list[str] | None,
        typer.Option(
            help="Budget METRIC=VALUE, repeatable: accuracy_drop, cosine, top1_agreement, "
            "sqnr_db, relative_l2_error, max_abs_error (needs --eval). Default: cosine>=0.99 "
            "and, for classifier outputs, top1_agreement>=0.99. Over budget, layers go back to "
            "float until it holds; if it never does: exit 1 and nothing written. 'none' turns "
            "the budget off.",
        ),
    ] = None,
    model_type: Annotated[
        ModelTypeChoice,
        typer.Option(help="NNCF's transformer scheme or not (openvino); auto: by the graph."),
    ] = ModelTypeChoice.auto,
    weights: Annotated[
        Path | None, typer.Option(help="State dict for a torch source (--target torch).")
    ] = None,
    input_specs: Annotated[
        list[str] | None,
        typer.Option("--input", help="Input spec for a torch source, NAME:DIMS[:DTYPE]."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for synthetic data.")] = 0,
    speed_check: Annotated[
        bool,
        typer.Option(
            "--speed-check/--no-speed-check",
            help="Bench against the FP32 parent, interleaved, and print the speedup.",
        ),
    ] = True,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder. Default: out/<name>_<precision>."),
    ] = None,
    keep_debug_metadata: KeepDebugMetadataOpt = False,
) -> None:
    """Quantize an FP32 model for a target runtime, with the library made for it.

    --mode auto (the default) tries the candidates that make sense (onnxruntime: static with
    --calibration, on graphs with attention dynamic after SmoothQuant too, and dynamic;
    openvino: the NNCF IR with an f32 and, where the CPU has it, a bf16 hint), keeps those
    within the accuracy budget, times them against FP32 interleaved and writes the fastest;
    the manifest and the printout say what each gave and why.
    onnxruntime: static is NNCF's transformer scheme with unsigned activations for graphs with
    attention, else ORT's QDQ with QUInt8 activations and QInt8 weights (ORT's default S8S8
    runs slower than FP32 on x86); dynamic is QInt8 weights per channel. openvino: NNCF,
    nncf.quantize_with_accuracy_control under --max-drift. tensorrt: the Q/DQ or FP16 ONNX a
    TensorRT engine is built from (dlopt build --backend tensorrt).
    Drift against the FP32 parent goes into the manifest. Then the result is benched against
    its parent, interleaved, and the speedup printed with its 95% interval; it says so loudly
    when the result is not faster.
    """
    from rich.console import Console
    from rich.markup import escape

    from dlopt.commands._progress import progress_display
    from dlopt.commands._tables import stripped_note
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model
    from dlopt.path_safety import check_outputs
    from dlopt.text_data import resolve_tokenizer

    calibration = resolve_tokenizer(calibration, model)
    evaluation = resolve_tokenizer(evaluation, model)
    options = QuantizeOptions(
        mode=mode.value,
        target=target.value,
        calibration=calibration,
        calibration_size=calibration_size,
        method=method.value,
        per_channel=per_channel,
        exclude=tuple(exclude or ()),
        evaluation=evaluation,
        evaluation_size=evaluation_size,
        max_drift=tuple(max_drift or ()),
        model_type=model_type.value,
        seed=seed,
    )
    name = Path(model.split(":")[0]).parent.name or "model"
    folder = output_dir or Path("out") / f"{name}_{options.precision()}"
    check_outputs([model, calibration, evaluation, weights], folders=[folder])
    with progress_display("quantizing") as say:
        result = quantize_model(model, folder, options, say, weights, tuple(input_specs or ()))
    out = Console()
    out.print(
        f"[green]wrote[/green] {escape(str(result.path))}  (manifest {result.manifest_path.name})"
    )
    out.print(stripped_note(result.manifest_path))
    _print_auto(out, result.details.get("auto"))
    _print_drift(out, result.details.get("drift", {}))
    if speed_check:
        from dlopt.artifacts import staging_dir

        # A scratch folder, removed afterwards: the bench's job files, worker logs and raw
        # outputs (and the torch target's FP32 TorchScript) are not part of the artifact.
        with staging_dir(folder) as scratch:
            _speed_check(model, result.path, scratch, options, weights, input_specs)


def _print_auto(out: Console, auto: dict[str, Any] | None) -> None:
    """What --mode auto tried, what each gave, and why the winner won."""
    from rich.markup import escape
    from rich.table import Table

    if not auto:
        return
    timing = auto.get("timing", {})
    table = Table(
        title=f"--mode auto: speedup vs {timing.get('against')}, {timing.get('threads')} thread, "
        f"batch {timing.get('batch')}, interleaved",
        title_justify="left",
    )
    for column in ("candidate", "status", "cosine", "kept float", "speedup [95% CI]"):
        table.add_column(column)
    for entry in auto.get("tried", []):
        speed = entry.get("speedup")
        cosine = entry.get("cosine")
        table.add_row(
            escape(str(entry["candidate"]))
            + (" *" if entry["candidate"] == auto["winner"] else ""),
            escape(str(entry["status"])),
            f"{cosine:.4f}" if isinstance(cosine, (int, float)) else "-",
            str(entry.get("kept_float_for_budget", "-")),
            f"{speed['ratio']:.2f}x [{speed['low']:.2f}, {speed['high']:.2f}]" if speed else "-",
        )
    out.print(table)
    out.print(f"chose {escape(str(auto['winner']))}: {escape(str(auto['why']))}")


def _print_drift(out: Console, drift: dict[str, Any]) -> None:
    """The drift line, with where it was measured, and the budget it was held to; without a
    budget (--max-drift none), drift that misses the default budget is printed in red."""
    from rich.markup import escape

    from dlopt.optimize.quantize.budget import DEFAULT_BUDGETS, budgets_hold, describe

    summary = describe(drift)
    if not summary:
        return
    where = (
        " [yellow](random inputs: no --eval or --calibration data; pass --eval DATA for a real "
        "measure)[/yellow]"
        if drift.get("random_inputs")
        else f" of {escape(str(drift.get('data')))}"
    )
    line = f"drift against FP32 on {drift.get('samples')} samples{where}: {summary}"
    source = drift.get("budget_source")
    budgets = ", ".join(str(budget) for budget in drift.get("budgets", []))
    if source == "none":
        if budgets_hold(DEFAULT_BUDGETS, drift):
            out.print(f"{line} (no budget: --max-drift none)")
        else:
            default = ", ".join(str(budget) for budget in DEFAULT_BUDGETS)
            out.print(
                f"[bold red]{line}[/bold red]\n[bold red]POOR[/bold red]: misses the default "
                f"budget ({default}); written only because of --max-drift none"
            )
        return
    which = "the default budget" if source == "default" else "--max-drift"
    out.print(f"{line}\nwithin {which}: {budgets}")


def _speed_check(
    parent: str,
    quantized: Path,
    folder: Path,
    options: QuantizeOptions,
    weights: Path | None,
    input_specs: list[str] | None,
) -> None:
    from rich.console import Console
    from rich.markup import escape

    from dlopt.harness.bench import BenchSettings, run_bench

    target = options.target
    # Like against like: the quantized model and its FP32 parent on the target's runtime,
    # interleaved in one worker (the ratio is only taken within one backend).
    backend = {"openvino": "openvino", "torch": "torch", "tensorrt": "tensorrt"}.get(
        target, "onnxruntime"
    )
    out = Console()
    if target == "tensorrt":
        from dlopt.backends import get_backend

        availability = get_backend("tensorrt").availability()
        if not availability.ok:  # it builds engines from both ONNX files where it can run
            out.print(f"speed check skipped: tensorrt cannot run here ({availability.reason})")
            return
    with Console(stderr=True).status("speed check against the FP32 parent"):
        if target == "torch":
            # Like against like: the FP32 model as TorchScript, traced the same way.
            from dlopt.optimize.export import ExportOptions, export_model

            exported = export_model(
                parent,
                folder / "fp32",
                tuple(input_specs or ()),
                weights,
                ExportOptions(("torchscript",)),
            )
            parent = str(exported[0].path)
        report = run_bench(
            [parent, str(quantized)],
            BenchSettings(backends=(backend,), reference=parent, min_time_s=2.0),
            folder,
        )
    row = report.row(str(quantized), backend)
    ratio = row.latency_ratio_to_reference
    if row.status != "ok" or not ratio:
        out.print(f"[red]speed check failed[/red]: {escape(str(row.reason))}")
        return
    low, high = ratio["ci95"]
    speedup, slow, fast = 1 / ratio["median_ratio"], 1 / high, 1 / low
    where = f"vs the FP32 parent, both on {backend}"
    if fast < 1.0:
        out.print(
            f"[bold red]NOT FASTER[/bold red]: the {quantized.name} runs at {speedup:.2f}x the "
            f"FP32 speed [{slow:.2f}, {fast:.2f}] ({where})"
        )
    else:
        out.print(f"speedup: {speedup:.2f}x [95% CI {slow:.2f}, {fast:.2f}] ({where}, interleaved)")
