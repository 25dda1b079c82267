"""`dlopt diff`: compare two models layer by layer on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dlopt.harness.layerdiff import LayerDiff
    from dlopt.harness.layerdiff.ranking import LayerResult

EXAMPLES = """\
Examples:

  # where does static INT8 lose accuracy? (QDQ tensors keep their float names)
  dlopt diff out/text/model.onnx out/text-int8/model.onnx \\
      --data models/text_transformer/data.py:evaluation --samples 300 --json diff.json

  # the same FP32 model on two backends: every node output
  dlopt diff out/cnn/model.onnx out/cnn/model.onnx --candidate-backend openvino \\
      --data sample:digits_cnn

  # FP32 ONNX on ONNX Runtime against an NNCF INT8 IR on OpenVINO (IR ports keep ONNX names)
  dlopt diff out/cnn/model.onnx out/cnn-ov-int8/model.xml --data sample:digits_cnn --top 10

Exit 0 when the diff ran (whatever it found), 2 for an unreadable model, different inputs, no
layer in common, or bad data.
"""


def diff(
    reference: Annotated[
        str,
        typer.Argument(help="The reference model (.onnx or OpenVINO .xml), e.g. the FP32 ONNX."),
    ],
    candidate: Annotated[
        str,
        typer.Argument(help="The model to compare (.onnx or .xml): quantized, converted, pruned."),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Inputs: .npz, folder of .npy, file.py:function, sample:NAME[:SPLIT], or "
            "synthetic (the default: random inputs).",
        ),
    ] = None,
    samples: Annotated[
        int | None, typer.Option(help="Compare on at most this many samples.")
    ] = 256,
    reference_backend: Annotated[
        str | None,
        typer.Option(help="Backend of the reference: onnxruntime (ONNX default) or openvino."),
    ] = None,
    candidate_backend: Annotated[
        str | None,
        typer.Option(help="Backend of the candidate: onnxruntime (ONNX default) or openvino."),
    ] = None,
    min_cosine: Annotated[
        float,
        typer.Option(help="Tolerance: the first layer with a lower cosine is reported."),
    ] = 0.99,
    top: Annotated[
        int, typer.Option(help="How many of the layers that add most error to list.")
    ] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per inference.")] = 8,
    threads: Annotated[
        int | None, typer.Option(help="Threads per backend (default: all cores).")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every layer's figures as JSON here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of synthetic data.")] = 0,
) -> None:
    """Run both models on the same inputs with their intermediate tensors exposed, match the
    tensors by name and print, per layer in graph order, cosine, SQNR and max abs error
    against the reference: the first layer beyond --min-cosine, and the layers that add the
    most error with the quantized inputs to return to float.

    Statistics are summed batch by batch, so memory holds one batch of activations whatever
    the number of samples.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from dlopt.harness.layerdiff import DiffOptions, diff_models
    from dlopt.jsonio import dumps

    options = DiffOptions(
        reference_backend=reference_backend,
        candidate_backend=candidate_backend,
        samples=samples,
        batch_size=batch_size,
        threads=threads,
        min_cosine=min_cosine,
        top=top,
        seed=seed,
    )
    console = Console(stderr=True)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("comparing layers (samples)", total=samples)

        def advance(done: int, planned: int | None) -> None:
            bar.update(task, completed=done, total=max(done, planned or done))

        result = diff_models(reference, candidate, data, options, progress=advance)
    Console().print(diff_summary(result))
    if json_path is not None:
        from dlopt.artifacts import atomic_write_text

        atomic_write_text(json_path, dumps(result.to_dict()) + "\n")
        console.print(f"wrote {json_path}")


def diff_summary(result: LayerDiff) -> object:
    """What a terminal shows: coverage, the first layer beyond tolerance, the worst layers."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    ref, cand = result.reference, result.candidate
    matched = sum(found for found, _ in result.coverage.values())
    total = sum(layers for _, layers in result.coverage.values())
    lines: list[Any] = [
        f"[bold]dlopt diff[/bold] {escape(cand['model'])} ({cand['backend']}) against "
        f"{escape(ref['model'])} ({ref['backend']}) on {result.samples} samples of "
        f"{escape(result.data)}",
        f"matched {matched} of {total} reference layers by name"
        + "".join(
            f"; {op} {found}/{layers}"
            for op, (found, layers) in result.coverage.items()
            if op in ("Conv", "MatMul", "Gemm", "Convolution")
        ),
    ]
    first = result.first_beyond_tolerance
    if first is None:
        lines.append(f"[green]every layer has cosine >= {result.min_cosine:g}[/green]")
    else:
        lines.append(
            f"[red]first layer beyond cosine {result.min_cosine:g}:[/red] "
            f"#{first.index} {escape(first.layer)} ({first.op_type}) cosine "
            f"{first.drift.cosine:.4f}, SQNR {first.drift.sqnr_db:.1f} dB" + _inputs_note(first)
        )
    if result.worst:
        table = Table(title=f"the {len(result.worst)} layers that add the most error")
        for column in (
            "#",
            "layer (op)",
            "cosine",
            "SQNR in->out dB",
            "reads the quantized output of",
        ):
            table.add_column(column, overflow="fold")
        for layer in result.worst:
            table.add_row(
                str(layer.index),
                f"{escape(layer.layer)} ({layer.op_type})",
                f"{layer.drift.cosine:.4f}",
                f"{layer.input_sqnr_db:.1f} -> {layer.drift.sqnr_db:.1f}",
                escape(", ".join(f"{q['layer']} ({q['op_type']})" for q in layer.quantized_inputs)),
            )
        lines.append(table)
        keep = suggested_float_nodes(result.worst[:3])
        if keep and any(layer.quantized_inputs for layer in result.worst[:3]):
            lines.append(
                "to try: keep the first three in float, with their quantized inputs: "
                + " ".join(f"--exclude {escape(name)}" for name in keep)
            )
    if result.skipped:
        lines.append(
            f"[yellow]{len(result.skipped)} matched tensors not compared[/yellow] (see --json)"
        )
    return Group(*lines)


def suggested_float_nodes(layers: list[LayerResult]) -> list[str]:
    """The candidate's nodes to keep in float for these layers, without repeats."""
    chosen: list[str] = []
    for layer in layers:
        chosen += [name for name in layer.keep_float if name not in chosen]
    return chosen


def _inputs_note(layer: LayerResult) -> str:
    from rich.markup import escape

    if not layer.quantized_inputs:
        return ""
    producers = ", ".join(f"{q['layer']} ({q['op_type']})" for q in layer.quantized_inputs)
    return f"; it reads the quantized output of {escape(producers)}"
