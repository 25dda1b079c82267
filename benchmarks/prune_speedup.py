"""What pruning buys on ONNX Runtime: pruned, and pruned + INT8, against FP32, interleaved.

On the CNN sample (models/digits_cnn): the FP32 export, structured pruning at --amount
(fine-tuned --epochs on the training split), unstructured pruning at the same amount, and
static INT8 (ONNX Runtime QDQ, U8S8, per channel) of both FP32 and the structured-pruned model.
All five are measured by `dlopt.harness.bench.run_bench` on ONNX Runtime in one interleaved
worker, with accuracy on the evaluation split; latency ratios are against FP32 with a
bootstrap 95% interval, and each model's achieved GOP/s as a fraction of this machine's FP32 or
INT8 GEMM peak (MACs counted by torch-pruning). Writes the bench report (JSON) to the output
folder.

    .venv/bin/python benchmarks/prune_speedup.py --amount 0.5 --epochs 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quantize_speedup import measure_peaks  # a sibling script: benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "models" / "digits_cnn"
SOURCE = f"{SAMPLE / 'model.py'}:create_model"
WEIGHTS = SAMPLE / "weights.pt"
DATA = SAMPLE / "data.py"


def quantize_int8(fp32: Path, folder: Path) -> Path:
    """Static INT8 with `dlopt quantize`'s ONNX Runtime path: QDQ, U8 activations, S8
    per-channel weights, calibrated on the sample's calibration split."""
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    options = QuantizeOptions(calibration=f"{DATA}:calibration")
    return quantize_model(str(fp32), folder, options).path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch and ORT threads")
    parser.add_argument("--seconds", type=float, default=3.0, help="min timed seconds per model")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "prune_speedup")
    args = parser.parse_args()

    from dlopt.harness.bench import BenchSettings, run_bench
    from dlopt.optimize.export import ExportOptions, export_model
    from dlopt.optimize.prune import PruneOptions, prune_model

    out: Path = args.output
    say = lambda message: print(f"... {message}", file=sys.stderr)  # noqa: E731
    export_model(SOURCE, out / "fp32", weights=WEIGHTS, options=ExportOptions(formats=("onnx",)))
    structured = prune_model(
        SOURCE,
        out / "pruned",
        weights=WEIGHTS,
        options=PruneOptions(
            amount=args.amount,
            finetune=f"{DATA}:training",
            evaluate=f"{DATA}:evaluation",
            epochs=args.epochs,
            threads=args.threads,
        ),
        progress=say,
    )
    unstructured = prune_model(
        SOURCE,
        out / "unstructured",
        weights=WEIGHTS,
        options=PruneOptions(method="unstructured", amount=args.amount, threads=args.threads),
        progress=say,
    )
    models = {
        "fp32": out / "fp32" / "model.onnx",
        "pruned": out / "pruned" / "model.onnx",
        "pruned+int8": quantize_int8(out / "pruned" / "model.onnx", out / "pruned_int8"),
        "int8": quantize_int8(out / "fp32" / "model.onnx", out / "int8"),
        "unstructured": out / "unstructured" / "model.onnx",
    }
    settings = BenchSettings(
        backends=("onnxruntime",),
        data=f"{DATA}:evaluation",
        reference=str(models["fp32"]),
        threads=args.threads,
        min_time_s=args.seconds,
    )
    report = run_bench([str(path) for path in models.values()], settings, out / "bench", say)
    rows = {row.model: row for row in report.rows}
    say("measuring this machine's FP32 and INT8 GEMM peaks")
    peaks = measure_peaks(2048, 5, args.threads)
    dense, thin = structured.before.macs, structured.after.macs
    macs = {"fp32": dense, "pruned": thin, "pruned+int8": thin, "int8": dense}
    macs["unstructured"] = dense  # zeros are still multiplied by a dense runtime
    figures = {
        "structured": {
            "parameters": [structured.before.parameters, structured.after.parameters],
            "macs": [structured.before.macs, structured.after.macs],
            "accuracy": structured.accuracy.__dict__ if structured.accuracy else None,
            "epochs": args.epochs,
        },
        "unstructured": {
            "sparsity": unstructured.pruned_layers_sparsity,
            "compressed_bytes": [
                unstructured.before.compressed_bytes,
                unstructured.after.compressed_bytes,
            ],
        },
        "rows": {},
    }
    figures["peaks"] = {key: peaks[key] for key in ("size", "threads", "fp32_gflops", "int8_gops")}
    print(
        f"peak at {args.threads} thread(s), 2048^3 GEMM: FP32 {peaks['fp32_gflops']:.1f} "
        f"GFLOP/s, INT8 {peaks['int8_gops']:.1f} GOP/s"
    )
    print(
        f"{'model':<14}{'p50 ms':>9}{'ratio to FP32 [95% CI]':>30}{'accuracy':>10}"
        f"{'GOP/s':>8}{'% of peak':>14}"
    )
    for name, path in models.items():
        row = rows[str(path)]
        p50 = row.latency["p50_ms"] if row.latency else float("nan")
        ratio = row.latency_ratio_to_reference or {}
        low, high = ratio.get("ci95", [float("nan")] * 2)
        accuracy = (row.metrics or {}).get("accuracy", {}).get("value")
        # Achieved operations (2 per MAC, batch 1) against the peak of the arithmetic used.
        gops = 2 * macs[name] / (p50 / 1e3) / 1e9
        kind = "int8" if "int8" in name else "fp32"
        fraction = gops / (peaks["int8_gops"] if kind == "int8" else peaks["fp32_gflops"])
        figures["rows"][name] = {
            "p50_ms": p50,
            "ratio": ratio,
            "accuracy": accuracy,
            "macs_per_sample": macs[name],
            "achieved_gops": gops,
            "fraction_of_peak": fraction,
            "peak": kind,
        }
        ratio_text = f"{ratio.get('median_ratio', float('nan')):.3f} [{low:.3f}, {high:.3f}]"
        accuracy_text = f"{accuracy:.4f}" if isinstance(accuracy, float) else "-"
        print(
            f"{name:<14}{p50:>9.3f}{ratio_text:>30}{accuracy_text:>10}{gops:>8.1f}"
            f"{100 * fraction:>8.1f}% {kind}"
        )
    (out / "prune_speedup.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"wrote {out / 'prune_speedup.json'} and {out / 'bench'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
