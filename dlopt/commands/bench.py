"""`dlopt bench`: latency, memory, drift and task metrics per (model, backend) pair."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dlopt.commands._common import (
    ExecutorOpt,
    ModelKeyOpt,
    RayAddressOpt,
    StageUriOpt,
    TrustPickleOpt,
)

if TYPE_CHECKING:
    from dlopt.harness.bench import BenchReport

EXAMPLES = """\
Examples:

  dlopt bench out/digits_cnn/model.onnx --backend onnxruntime --backend openvino \\
      --data sample:digits_cnn --batch-size 1 --min-time 5 --json reports/bench.json

  dlopt bench out/q/model.int8.onnx --reference out/digits_cnn/model.onnx \\
      --backend onnxruntime --data eval.npz --iterations 1000 --md reports/bench.md

  dlopt bench models/digits_cnn/model.py:create_model -w models/digits_cnn/weights.pt \\
      --backend torch --threads 2

  dlopt bench out/cnn-enc/model.onnx.enc --key-file model.key -b onnxruntime -b openvino
  dlopt bench out/cnn/model.onnx out/q/model.int8.onnx --reference out/cnn/model.onnx \\
      -b onnxruntime -b openvino --data eval.npz --executor ray --eval-shards 4

A failed row (the worker crashed, ran out of memory or timed out) is printed in red and recorded
in the reports; it does not by itself make the command fail (exit 0). Bad input exits 2.
"""


def bench(
    models: Annotated[
        list[str],
        typer.Argument(
            help="Models: .onnx, OpenVINO .xml, TorchScript, or model.py:factory (torch).",
            show_default=False,
        ),
    ],
    backend: Annotated[
        list[str] | None,
        typer.Option("--backend", "-b", help="Backend, repeatable (see `dlopt backends`)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Evaluation data: .npz, folder of .npy, file.py:function, text:FILE.txt|.jsonl "
            "(tokenized with the model's tokenizer), sample:NAME[:SPLIT], "
            "or synthetic (default: synthetic random inputs, latency and drift only).",
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="The FP32 model whose outputs and latency the others are compared to."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per inference.")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="Threads per backend (default: all cores).")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Timed runs per model (instead of --min-time).")
    ] = None,
    min_time: Annotated[
        float | None,
        typer.Option("--min-time", help="Seconds of timed runs per backend (default 2)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate on at most this many samples.")
    ] = None,
    precision_hint: Annotated[
        str | None,
        typer.Option(help="OpenVINO INFERENCE_PRECISION_HINT: f32 (default), bf16 or f16."),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="State dict for factory sources.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds before a worker is killed and its row fails.")
    ] = 900.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    md_path: Annotated[Path | None, typer.Option("--md", help="Write a Markdown table.")] = None,
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for worker jobs, logs and outputs.")
    ] = Path("reports/bench"),
    seed: Annotated[int, typer.Option(help="Seed of synthetic data.")] = 0,
    provider: Annotated[
        str | None,
        typer.Option(
            help="ONNX Runtime execution provider: auto (TensorRT, then CUDA, then CPU, as the "
            "installed onnxruntime offers them; the default), tensorrt, cuda or cpu. A named "
            "provider that is not installed is an error (exit 2), never a silent CPU run."
        ),
    ] = None,
    eval_shards: Annotated[
        int,
        typer.Option(
            "--eval-shards",
            help="Split the evaluation set into this many index ranges, one worker process "
            "each (ranges of at least 4096 samples); drift and metrics are merged exactly.",
        ),
    ] = 1,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    stage_uri: StageUriOpt = None,
    memory_limit: Annotated[
        int | None,
        typer.Option(
            "--memory-limit",
            metavar="MB",
            help="Cap each worker's address space at MB (RLIMIT_AS, imports included): a model "
            "that allocates past it fails its row as out of memory instead of exhausting the "
            "machine. Virtual memory counts, so leave headroom over the expected peak RSS.",
            show_default=False,
        ),
    ] = None,
    trust_pickle: TrustPickleOpt = False,
    key_file: ModelKeyOpt = None,
) -> None:
    """Measure each model on each backend, each pair in a fresh worker process.

    Reports load and first-inference time apart from latency (p50/p90/p95/p99, bootstrap
    interval of the median, throughput), peak memory by phase, size on disk, and, against
    --reference, drift per output and task metrics when the data has labels. Models on the
    same backend are timed interleaved (A B A B ...) and their ratio to the reference has a
    bootstrap interval.
    """
    from rich.console import Console

    from dlopt.commands._progress import progress_display
    from dlopt.errors import ConfigError
    from dlopt.harness.bench import BenchSettings, run_bench
    from dlopt.harness.bench_report import render_markdown, write_json
    from dlopt.harness.executors import make_executor
    from dlopt.path_safety import check_outputs
    from dlopt.trust.keys import load_model_key

    if iterations is not None and min_time is not None:
        raise ConfigError("both --iterations and --min-time given", "give one of them")
    # Before any measuring: a report that cannot be written would throw the run away.
    check_outputs([*models, reference, data, weights], [output_dir], [json_path, md_path])
    from dlopt.text_data import resolve_tokenizer

    data = resolve_tokenizer(data, reference or (models[0] if models else None))
    settings = BenchSettings(
        backends=tuple(backend or ["onnxruntime"]),
        data=data,
        reference=reference,
        batch_size=batch_size,
        threads=threads,
        iterations=iterations,
        min_time_s=min_time if min_time is not None else 2.0,
        eval_limit=limit,
        precision_hint=precision_hint,
        weights=str(weights) if weights else None,
        timeout_s=timeout,
        seed=seed,
        memory_limit_mb=memory_limit,
        provider=provider,
        trust_pickle=trust_pickle,
        eval_shards=eval_shards,
    )
    chosen_executor = make_executor(executor, ray_address, stage_uri)
    if provider in ("tensorrt", "cuda") and executor == "local":
        # Before any worker starts: a GPU provider that is not installed is the user's to fix
        # (on Ray, the node's onnxruntime decides: a missing provider fails its rows).
        import onnxruntime as ort

        from dlopt.backends.onnxruntime_backend import ort_provider_plan

        ort_provider_plan(provider, ort.get_available_providers())
    console = Console(stderr=True)
    with progress_display("benchmarking") as say:
        report = run_bench(
            models,
            settings,
            output_dir,
            progress=say,
            executor=chosen_executor,
            model_key=load_model_key(key_file),
        )
    Console().print(bench_table(report))
    if json_path is not None:
        write_json(report, json_path)
        console.print(f"wrote {json_path}", markup=False)
    if md_path is not None:
        from dlopt.artifacts import atomic_write_text

        atomic_write_text(md_path, render_markdown(report))
        console.print(f"wrote {md_path}", markup=False)


def bench_table(report: BenchReport) -> object:
    """Two terminal tables (speed and memory; accuracy and drift) that fit 100 columns.

    Failed rows are red with their reason, skipped rows yellow; warnings follow as a caption.
    """
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    from dlopt.harness.bench_report import model_labels, row_cells
    from dlopt.plain_text import plain_text

    speed = Table(title="dlopt bench: speed and memory")
    accuracy = Table(title="dlopt bench: accuracy and drift vs the reference")
    speed_columns = (
        "model",
        "backend",
        "status",
        "p50 ms (95% CI)",
        "p99 ms",
        "items/s",
        "ratio to ref",
        "peak MB",
        "size MB",
    )
    accuracy_columns = ("model", "backend", "max abs err", "cosine", "top-1", "metric")
    for column in speed_columns:
        speed.add_column(column, overflow="fold")
    for column in accuracy_columns:
        accuracy.add_column(column, overflow="fold")
    # Rows are named by what tells the models apart (the folder, where every file is
    # model.onnx), so a narrow terminal never splits a long path mid-word; the paths follow.
    labels = model_labels(list(dict.fromkeys(row.model for row in report.rows)))
    for row in report.rows:
        style = {"failed": "red", "skipped": "yellow"}.get(row.status)
        # escaped: a model named [red] stays as it is
        cells = [escape(text) for text in row_cells(row, labels.get(row.model))]
        speed.add_row(*cells[:9], style=style)
        accuracy.add_row(*cells[:2], *cells[9:], style=style)
    captions = [
        escape(plain_text(f"{row.model} on {row.backend}: {warning}"))
        for row in report.rows
        for warning in row.warnings
    ]
    renamed = [f"{label} = {model}" for model, label in labels.items() if label != model]
    if renamed:
        speed.caption = escape(plain_text("models: " + "; ".join(renamed)))
    if captions:
        accuracy.caption = "\n".join(captions)
    return Group(speed, accuracy)
