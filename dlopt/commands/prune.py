"""`dlopt prune`: structured, unstructured or 2:4 pruning, optional fine-tuning, saved whole."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dlopt.commands._common import (
    InputOpt,
    KeepDebugMetadataOpt,
    SourceArg,
    TrustPickleOpt,
    WeightsOpt,
)

if TYPE_CHECKING:
    from rich.table import Table

    from dlopt.optimize.prune import PruneResult

EXAMPLES = """\
Examples:

  dlopt prune models/digits_cnn/model.py:create_model -w models/digits_cnn/weights.pt \\
      --amount 0.5 -o out/digits_cnn_pruned

  dlopt prune models/digits_cnn/model.py:create_model -w models/digits_cnn/weights.pt \\
      --amount 0.5 --finetune models/digits_cnn/data.py:training \\
      --eval-data models/digits_cnn/data.py:evaluation --epochs 3 --threads 1

  dlopt prune models/text_transformer/model.py:create_model \\
      -w models/text_transformer/weights.pt --ignore 'layers.*.attention' --round-to 8

  dlopt prune net.py:build --method unstructured --amount 0.6 --per-layer

  dlopt prune net.py:build --method 2:4     # for TensorRT sparse tensor cores
"""


class MethodChoice(str, Enum):
    structured = "structured"
    unstructured = "unstructured"
    two_four = "2:4"


class ImportanceChoice(str, Enum):
    l1 = "l1"
    l2 = "l2"
    taylor = "taylor"


class TaskChoice(str, Enum):
    auto = "auto"
    classification = "classification"
    regression = "regression"


def prune(
    source: SourceArg,
    input_specs: InputOpt = None,
    weights: WeightsOpt = None,
    method: Annotated[
        MethodChoice,
        typer.Option(
            help="structured: remove channels (smaller, faster everywhere); unstructured: zero "
            "single weights (smaller when compressed, not faster on dense runtimes); 2:4: two "
            "of every four weights (faster only with TensorRT on Ampere+ GPUs)."
        ),
    ] = MethodChoice.structured,
    amount: Annotated[
        float | None,
        typer.Option(
            help="Fraction to remove, in (0, 1). Structured: of each layer's output channels "
            "(of the heads in attention); a layer loses channels on both sides, so its "
            "parameters and MACs fall about quadratically: 0.3 of the channels removes about "
            "half the parameters (1 - 0.7^2). Unstructured: of the weights. Default 0.3; 2:4 "
            "is always 0.5.",
            show_default=False,
        ),
    ] = None,
    importance: Annotated[
        ImportanceChoice,
        typer.Option(help="Channel importance: L1 or L2 magnitude, or Taylor (needs --finetune)."),
    ] = ImportanceChoice.l2,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore",
            help="Layer never pruned, as in named_modules() (globs allowed, e.g. "
            "'layers.*.attention'); repeatable.",
            show_default=False,
        ),
    ] = None,
    round_to: Annotated[
        int | None,
        typer.Option(help="Keep channel counts multiples of this (e.g. 8 for fast kernels)."),
    ] = None,
    prune_output_layers: Annotated[
        bool,
        typer.Option(
            "--prune-output-layers", help="Also prune the layers that produce the outputs."
        ),
    ] = False,
    finetune: Annotated[
        str | None,
        typer.Option(
            help="Labelled training data to recover accuracy on: file.py:function, .npz, "
            "a folder of .npy, or sample:NAME:training.",
            show_default=False,
        ),
    ] = None,
    eval_data: Annotated[
        str | None,
        typer.Option(
            "--eval-data",
            help="Labelled data to measure accuracy on. Default: the --finetune data.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs.")] = 3,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate (Adam).")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Fine-tuning and evaluation batch size.")] = 32,
    task: Annotated[
        TaskChoice,
        typer.Option(
            help="Loss and metric: auto picks classification for integer labels, "
            "regression for float ones."
        ),
    ] = TaskChoice.auto,
    seed: Annotated[int, typer.Option(help="Seed of fine-tuning and example inputs.")] = 0,
    threads: Annotated[
        int | None,
        typer.Option(help="torch CPU threads (default: torch's). 1 is fastest on busy machines."),
    ] = None,
    per_layer: Annotated[
        bool, typer.Option("--per-layer", help="Also print a table per layer.")
    ] = False,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder. Default: out/<model name>_pruned."),
    ] = None,
    trust_pickle: TrustPickleOpt = False,
    keep_debug_metadata: KeepDebugMetadataOpt = False,
) -> None:
    """Prune a PyTorch model and save it whole as TorchScript and ONNX (parity-checked).

    Prints parameters, MACs, size and sparsity before and after, and with --finetune the
    accuracy before pruning, after pruning and after fine-tuning. Exit 2 for an --amount
    outside (0, 1), an unknown --ignore layer, or a model the dependency graph cannot prune.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dlopt.commands._tables import stripped_note
    from dlopt.commands.export import default_output_dir
    from dlopt.optimize.prune import PruneOptions, prune_model
    from dlopt.path_safety import check_outputs
    from dlopt.text_data import resolve_tokenizer

    finetune = resolve_tokenizer(finetune, source)
    eval_data = resolve_tokenizer(eval_data, source)
    options = PruneOptions(
        method=method.value,
        amount=amount,
        importance=importance.value,
        ignore=tuple(ignore or ()),
        round_to=round_to,
        keep_output_layers=not prune_output_layers,
        finetune=finetune,
        evaluate=eval_data,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        task=task.value,
        seed=seed,
        threads=threads,
    )
    folder = output_dir or default_output_dir(source).with_name(
        default_output_dir(source).name + "_pruned"
    )
    check_outputs([source, weights, finetune, eval_data], folders=[folder])
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        console=console,
        transient=True,
    ) as bar:
        status = bar.add_task("pruning", total=None, loss="")

        def on_step(epoch: int, step: int, total: int, loss: float) -> None:
            bar.update(
                status,
                description=f"fine-tuning epoch {epoch}/{options.epochs}",
                completed=step,
                total=total,
                loss=f"loss {loss:.4f}",
            )

        result = prune_model(
            source,
            folder,
            input_specs or [],
            weights,
            options,
            allow_pickle=trust_pickle,
            progress=lambda message: bar.update(status, description=message),
            on_train_step=on_step,
        )
    out = Console()
    out.print(summary_table(result))
    if per_layer:
        out.print(layer_table(result))
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}")
    if result.skipped_layers:
        out.print(
            "[yellow]note:[/yellow] not 2:4-pruned (input channels not a multiple of 4): "
            + ", ".join(result.skipped_layers)
        )
    if result.kept_layers:
        out.print(f"kept (output layers): {', '.join(result.kept_layers)}", markup=False)
    if options.method == "structured":
        kept = 1 - options.effective_amount
        out.print(
            f"amount {options.effective_amount:g} is the share of channels removed from each "
            f"pruned layer; parameters and MACs fall about quadratically (to ~{kept * kept:.0%} "
            "where both sides of a layer are pruned), less where layers are kept",
            markup=False,
        )
    from dlopt.commands._tables import parity_table

    for artifact in result.artifacts:
        out.print(parity_table(artifact))
        out.print(
            f"[green]wrote[/green] {escape(str(artifact.path))}  "
            f"(manifest {escape(artifact.manifest_path.name)})"
        )
        out.print(stripped_note(artifact.manifest_path))


def summary_table(result: PruneResult) -> Table:
    """Parameters, MACs, size, sparsity and accuracy, before and after."""
    from rich.table import Table

    before, after = result.before, result.after
    options = result.options
    table = Table(title=f"dlopt prune: {options.method}, amount {options.effective_amount:g}")
    for column in ("", "before", "after", "change"):
        table.add_column(column, justify="left" if not column else "right")
    rows = [
        ("parameters", before.parameters, after.parameters, _count),
        ("MACs per sample", before.macs, after.macs, _count),
        ("size (FP32)", before.size_bytes, after.size_bytes, _bytes),
        ("size (zlib)", before.compressed_bytes, after.compressed_bytes, _bytes),
    ]
    for label, old, new, fmt in rows:
        table.add_row(label, fmt(old), fmt(new), _ratio(old, new))
    table.add_row("weight sparsity", f"{before.sparsity:.1%}", f"{after.sparsity:.1%}", "")
    accuracy = result.accuracy
    if accuracy is not None:
        name = accuracy.metric
        table.add_row(f"{name}, after pruning", "", f"{accuracy.after_pruning:.4f}", "")
        table.add_row(
            f"{name} ({accuracy.samples} samples)",
            f"{accuracy.before:.4f}",
            f"{accuracy.after_finetune:.4f}" if accuracy.after_finetune is not None else "-",
            f"{accuracy.after_finetune - accuracy.before:+.4f}"
            if accuracy.after_finetune is not None
            else f"{accuracy.after_pruning - accuracy.before:+.4f}",
        )
    if result.finetune is not None:
        tuned = result.finetune
        table.caption = (
            f"fine-tuned {tuned.epochs} epochs ({tuned.steps} steps, lr {tuned.lr:g}, "
            f"seed {tuned.seed}) in {tuned.seconds:.0f} s; accuracy on {accuracy.data}"
            if accuracy
            else None
        )
    return table


def layer_table(result: PruneResult) -> Table:
    """Per prunable layer: weight shape and sparsity before and after."""
    from rich.table import Table

    table = Table(title="per layer")
    table.add_column("layer", no_wrap=True)
    for column in ("weight before", "weight after", "params after", "sparsity"):
        table.add_column(column, justify="right", no_wrap=True)
    after_by_name = {layer.name: layer for layer in result.after.layers}
    for layer in result.before.layers:
        pruned = after_by_name.get(layer.name)
        table.add_row(
            layer.name,
            "x".join(map(str, layer.weight_shape)),
            "x".join(map(str, pruned.weight_shape)) if pruned else "removed",
            f"{pruned.parameters:,}" if pruned else "",
            f"{pruned.sparsity:.1%}" if pruned else "",
        )
    return table


def _count(value: int) -> str:
    return f"{value / 1e9:.3f} G" if value >= 1e9 else f"{value / 1e6:.3f} M"


def _bytes(value: int) -> str:
    return f"{value / 1e6:.2f} MB"


def _ratio(old: int, new: int) -> str:
    return f"{(new - old) / old:+.1%}" if old else ""
