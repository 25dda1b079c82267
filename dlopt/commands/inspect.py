"""`dlopt inspect`: what a model is made of; with two models, what changed between them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dlopt.commands._common import InputOpt, TrustPickleOpt, WeightsOpt

if TYPE_CHECKING:
    from dlopt.harness.inspect import ModelSummary

EXAMPLES = """\
Examples:

  dlopt inspect out/cnn/model.onnx

  # what quantization changed: parameters, MACs, precision mix, size, side by side
  dlopt inspect out/text/model.onnx out/text-int8/model.onnx

  dlopt inspect out/cnn-ov-int8/model.xml --json > ir.json

  dlopt inspect models/digits_cnn/model.py:create_model -w models/digits_cnn/weights.pt \\
      --input image:batch=1x1x32x32

MACs are counted at the input specs' example shapes (dynamic axes at their example size):
--input, else the model's manifest, else the model file's DLOPT_INPUTS. Exit 2 for a model
that cannot be read.
"""


def inspect(
    model: Annotated[
        str,
        typer.Argument(
            help="ONNX, OpenVINO .xml, TorchScript, .pt2 or model.py:factory (with --weights).",
            show_default=False,
        ),
    ],
    second: Annotated[
        str | None,
        typer.Argument(help="A second model: print the differences side by side."),
    ] = None,
    weights: WeightsOpt = None,
    input_specs: InputOpt = None,
    trust_pickle: TrustPickleOpt = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (for machines) instead of tables.")
    ] = False,
) -> None:
    """Inputs and outputs, parameters, MACs and FLOPs per op type, op histogram, precision
    mix (weights and compute ops by FP32/FP16/BF16/INT8, quantize pairs, ops left in float
    between quantized ones), sparsity, size on disk, opset and producer, and metadata that
    leaks paths or source code."""
    from rich.console import Console

    from dlopt.harness.inspect import inspect_model, side_by_side
    from dlopt.jsonio import dumps

    console = Console(stderr=True)
    with console.status(f"inspecting {model}"):
        summaries = [inspect_model(model, weights, input_specs or (), trust_pickle)]
        if second is not None:
            summaries.append(inspect_model(second, None, input_specs or (), trust_pickle))
    if as_json:
        data: dict[str, Any] = {"kind": "dlopt.inspect", "schema_version": 1}
        data["models"] = [summary.to_dict() for summary in summaries]
        if len(summaries) == 2:
            data["differences"] = side_by_side(*summaries)
        print(dumps(data))
        return
    out = Console()
    for summary in summaries:
        out.print(summary_table(summary))
    if len(summaries) == 2:
        out.print(differences_table(summaries[0], summaries[1]))


def summary_table(summary: ModelSummary) -> Any:
    """One model as a two-column table that fits 100 columns."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"dlopt inspect {escape(summary.model)}", show_header=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    opsets = ", ".join(f"{domain} {version}" for domain, version in summary.opset.items())
    table.add_row("format", f"{summary.format}, {_bytes(summary.size_bytes)} on disk")
    table.add_row(
        "producer", escape(f"{summary.producer or '?'}" + (f"; opset {opsets}" if opsets else ""))
    )
    for kind, tensors in (("inputs", summary.inputs), ("outputs", summary.outputs)):
        table.add_row(
            kind,
            escape(
                "; ".join(
                    f"{t.name} [{', '.join(map(str, t.shape or []))}] {t.dtype}" for t in tensors
                )
            ),
        )
    table.add_row(
        "parameters",
        f"{_count(summary.parameters)} ({_shares(summary.precision.weights)}); "
        f"sparsity {summary.sparsity:.1%}",
    )
    at = "; ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in summary.macs_at.items())
    macs = (
        "unknown"
        if summary.macs is None
        else f"{_count(summary.macs)} (FLOPs {_count(summary.flops or 0)})"
    )
    by_type = ", ".join(f"{op} {_count(n)}" for op, n in summary.macs_by_op_type.items())
    table.add_row("MACs", escape(f"{macs} at {at}" + (f": {by_type}" if by_type else "")))
    mix = summary.precision
    compute = ", ".join(f"{kind} {n}" for kind, n in mix.compute_ops.items()) or "none"
    table.add_row("compute ops", f"{compute}; quantize pairs {mix.quantize_pairs}")
    if mix.float_between_quantized:
        names = ", ".join(f"{n['node']} ({n['op_type']})" for n in mix.float_between_quantized)
        table.add_row(
            f"float between quantized ({len(mix.float_between_quantized)})", escape(names)
        )
    table.add_row("ops", escape(", ".join(f"{op} {n}" for op, n in summary.op_histogram.items())))
    for leak in summary.leaks:
        table.add_row(
            "[red]leaks[/red]",
            escape(
                f"{leak['where']}: {leak['count']}x {' and '.join(leak['kinds'])}, "
                f"e.g. {leak['example']}"
            ),
        )
    for note in summary.notes:
        table.add_row("note", escape(note))
    return table


def differences_table(first: ModelSummary, second: ModelSummary) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from dlopt.harness.inspect import side_by_side

    table = Table(title="what changed (second vs first)")
    for column in ("what", "first", "second", "change"):
        table.add_column(column, overflow="fold")
    for row in side_by_side(first, second):
        change = row.get("change")
        table.add_row(
            row["what"],
            escape(_value(row["first"])),
            escape(_value(row["second"])),
            "" if change is None else f"x{change:.3g}",
        )
    return table


def _value(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _count(value)
    return str(value)


def _count(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return str(value)


def _bytes(size: int) -> str:
    return f"{size / 2**20:.2f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def _shares(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(
        f"{kind} {n / total:.1%}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1])
    )
