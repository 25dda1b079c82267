"""What quantization buys on CPU: each `quantize_model` variant against FP32, interleaved.

First this machine's matrix-multiply peak at --threads (--gemm-size square, best of several
runs, alternated): FP32 with numpy and with ONNX Runtime (MatMul; the better one is the peak),
INT8 with ONNX Runtime (one MatMulInteger node, uint8 x int8 -> int32). Then, for each sample
(models/digits_cnn, models/text_transformer): the FP32 ONNX export, and `quantize_model` with
(mode, target) in dynamic/onnxruntime, static/onnxruntime, static/openvino, fp16/onnxruntime.
A pair whose options raise ConfigError (not there yet) is a "not available" row. The ONNX
variants are timed by `dlopt.harness.bench.run_bench` on ONNX Runtime in one interleaved worker
with the FP32 parent as reference (latency ratio with a bootstrap 95% interval, drift, accuracy
on the evaluation split). An OpenVINO IR is benched against the parent on OpenVINO (drift,
accuracy), and its ratio to FP32 on ONNX Runtime comes from an in-process interleaved loop,
since run_bench interleaves only within one backend. Achieved GOP/s (2 x MACs per sample,
torch-pruning's op counter on the timed inputs) is given as a share of the FP32 or INT8 peak.
Prints a table and writes JSON (and each bench report) to the output folder.

    .venv/bin/python benchmarks/quantize_speedup.py --threads 1 --seconds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ("digits_cnn", "text_transformer")
# (mode, target, --max-drift budget or None)
VARIANTS = (
    ("dynamic", "onnxruntime", None),
    ("static", "onnxruntime", None),
    ("static", "onnxruntime", "cosine=0.995"),
    ("static", "openvino", None),
    ("fp16", "onnxruntime", None),
)
INT8_MODES = ("dynamic", "static")
Progress = Callable[[str], None]


def gemm_model(size: int, integer: bool) -> Any:
    """One [size, size] x [size, size] matrix multiply with constant weights (as in a model, so
    ORT can pre-pack them): MatMul in float32, or MatMulInteger uint8 x int8 -> int32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights: np.ndarray[Any, Any]
    if integer:
        op, input_type, output_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
        weights = rng.integers(-128, 128, (size, size), dtype=np.int8)
    else:
        op, input_type, output_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
        weights = rng.standard_normal((size, size), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        op,
        [helper.make_tensor_value_info("a", input_type, [size, size])],
        [helper.make_tensor_value_info("y", output_type, [size, size])],
        [numpy_helper.from_array(weights, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def measure_peaks(size: int, runs: int, threads: int) -> dict[str, Any]:
    """Best-of-`runs` GEMM throughput at `threads`: FP32 with numpy and with ONNX Runtime, INT8
    with ONNX Runtime (MatMulInteger); the three alternate, run by run, so that the machine's
    drift hits them alike.

    Hand-built because no library reports what this machine reaches: a theoretical peak from
    clock x SIMD width is wrong on shared vCPUs (turbo, AVX-512 down-clocking, neighbours), so
    a large GEMM in the runtimes themselves is the practical ceiling. The FP32 peak is the
    better of numpy and ORT: numpy's bundled OpenBLAS may pick narrower kernels than the CPU
    has (Haswell/AVX2 ones on our Zen 5 vCPUs: about half of ORT's AVX-512 MLAS).
    """
    import onnxruntime as ort
    from threadpoolctl import threadpool_info, threadpool_limits

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    rng = np.random.default_rng(1)
    a32, b32 = rng.standard_normal((2, size, size), dtype=np.float32)
    feeds = {False: {"a": a32}, True: {"a": rng.integers(0, 256, (size, size), dtype=np.uint8)}}
    sessions = {
        integer: ort.InferenceSession(
            gemm_model(size, integer).SerializeToString(),
            options,
            providers=["CPUExecutionProvider"],
        )
        for integer in (False, True)
    }
    calls = {
        "fp32_numpy": lambda: np.matmul(a32, b32),
        "fp32_onnxruntime": lambda: sessions[False].run(None, feeds[False]),
        "int8_onnxruntime": lambda: sessions[True].run(None, feeds[True]),
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    with threadpool_limits(limits=threads):
        for call in calls.values():  # warm-up: BLAS buffers, ORT pre-packing
            call()
        for _ in range(runs):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                seconds[name].append(time.perf_counter() - started)
    per_s = {name: 2 * size**3 / min(times) / 1e9 for name, times in seconds.items()}
    return {
        "size": size,
        "runs": runs,
        "threads": threads,
        "fp32_gflops": max(per_s["fp32_numpy"], per_s["fp32_onnxruntime"]),
        "int8_gops": per_s["int8_onnxruntime"],
        "gops": per_s,
        "seconds": seconds,
        "numpy_blas": [
            {key: pool.get(key) for key in ("internal_api", "version", "architecture")}
            for pool in threadpool_info()
        ],
    }


def macs_per_sample(sample: Path) -> float:
    """Mean MACs of one forward pass over the inputs the bench times (the first evaluation
    samples at batch 1), counted by torch-pruning's op counter (module layers only: the text
    sample's two attention matmuls per layer are functional and not counted, ~5% at seq 64)."""
    import torch

    from dlopt.data import open_data
    from dlopt.harness.worker import LATENCY_BATCHES
    from dlopt.optimize.prune.stats import model_stats
    from dlopt.sources import load_torch_model

    loaded = load_torch_model(f"{sample / 'model.py'}:create_model", sample / "weights.pt")
    specs = list(loaded.default_inputs)
    counts = []
    source = open_data(f"{sample / 'data.py'}:evaluation", specs, batch_size=1)
    for batch in itertools.islice(source, LATENCY_BATCHES):
        example = tuple(torch.from_numpy(batch.inputs[spec.name]) for spec in specs)
        counts.append(model_stats(loaded.module, example).macs)
    return float(np.mean(counts))


def make_variant(
    fp32: Path,
    folder: Path,
    mode: str,
    target: str,
    calibration: str,
    size: int,
    budget: str | None = None,
    evaluation: str | None = None,
) -> tuple[Path | None, str | None]:
    """(quantized model, None), or (None, why not) when dlopt rejects the options."""
    from dlopt.errors import ConfigError, DloptError
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    try:
        options = QuantizeOptions(
            mode=mode,
            target=target,
            calibration=calibration if mode == "static" else None,
            calibration_size=size,
            evaluation=evaluation if budget else None,
            # No budget row = plain INT8 as the library makes it (the default budget would
            # already send a lossy one through the fallback).
            max_drift=(budget,) if budget else ("none",),
        )
        return quantize_model(str(fp32), folder, options).path, None
    except ConfigError as error:
        return None, f"not available: {error.one_line()}"
    except DloptError as error:  # a real failure: shown as a failed row, not hidden
        return None, f"failed: {error.one_line()}"
    except Exception as error:  # a dlopt bug: its traceback to stderr, a failed row here
        traceback.print_exc()
        return None, f"failed (bug): {type(error).__name__}: {str(error).splitlines()[0][:160]}"


def cross_backend_ratio(
    candidate: Path, backend: str, reference: Path, data: str, threads: int, seconds: float
) -> dict[str, Any]:
    """Candidate on `backend` against the reference on ONNX Runtime, interleaved in this
    process (A B A B ... on the same first evaluation samples), as the bench worker times."""
    from dlopt.backends import get_backend
    from dlopt.backends.base import LoadOptions
    from dlopt.data import open_data
    from dlopt.harness.latency import WarmupPolicy, ratio_of_medians, summarize, warm_up
    from dlopt.harness.worker import LATENCY_BATCHES, MIN_TIMED_RUNS

    options = LoadOptions(threads=threads)
    sessions = [
        get_backend(backend).load(str(candidate), options),
        get_backend("onnxruntime").load(str(reference), options),
    ]
    timers = []
    for session in sessions:
        feeds = [
            batch.inputs
            for batch in itertools.islice(open_data(data, session.inputs, 1), LATENCY_BATCHES)
        ]
        timers.append(_timer(session, itertools.cycle(feeds)))
    for timer in timers:
        warm_up(timer, WarmupPolicy())
    samples: list[list[int]] = [[], []]
    deadline = time.perf_counter() + seconds
    while len(samples[0]) < MIN_TIMED_RUNS or time.perf_counter() < deadline:
        for timer, timed in zip(timers, samples, strict=True):
            timed.append(timer())
    for session in sessions:
        session.close()
    return {
        "ratio": ratio_of_medians(samples[0], samples[1]).to_dict(),
        "p50_ms": summarize(samples[0], 1).p50_ms,
        "reference_p50_ms": summarize(samples[1], 1).p50_ms,
    }


def _timer(session: Any, feeds: Any) -> Callable[[], int]:
    def run_once() -> int:
        feed = next(feeds)
        started = time.perf_counter_ns()
        session.run(feed)
        return time.perf_counter_ns() - started

    return run_once


def bench_sample(
    name: str, out: Path, peaks: dict[str, Any], args: argparse.Namespace, say: Progress
) -> dict[str, Any]:
    """Export, quantize and measure one sample; returns its rows (FP32 first)."""
    from dlopt.harness.bench import BenchRow, BenchSettings, run_bench
    from dlopt.harness.bench_report import write_json
    from dlopt.optimize.export import ExportOptions, export_model

    sample = ROOT / "models" / name
    data = f"{sample / 'data.py'}:evaluation"
    work = out / name
    say(f"{name}: exporting FP32 ONNX")
    (exported,) = export_model(
        f"{sample / 'model.py'}:create_model",
        work / "fp32",
        weights=sample / "weights.pt",
        options=ExportOptions(formats=("onnx",)),
    )
    fp32 = exported.path
    variants: dict[str, tuple[str, Path | None, str | None]] = {"fp32": ("fp32", fp32, None)}
    for mode, target, budget in VARIANTS:
        say(f"{name}: quantize {mode} for {target}" + (f" within {budget}" if budget else ""))
        calibration = f"{sample / 'data.py'}:calibration"
        suffix = f"_{budget.replace('=', '')}" if budget else ""
        folder = work / f"{mode}_{target}{suffix}"
        evaluation = f"{sample / 'data.py'}:evaluation"
        path, reason = make_variant(
            fp32, folder, mode, target, calibration, args.calibration_size, budget, evaluation
        )
        label = f"{mode}/{target}" + (f" {budget}" if budget else "")
        variants[label] = (mode, path, reason)

    def settings(backend: str) -> BenchSettings:
        return BenchSettings(
            backends=(backend,),
            data=data,
            reference=str(fp32),
            threads=args.threads,
            min_time_s=args.seconds,
            eval_limit=args.eval_limit,
        )

    onnx_models = [p for _, p, _ in variants.values() if p is not None and p.suffix == ".onnx"]
    say(f"{name}: bench on onnxruntime ({len(onnx_models)} models, interleaved)")
    report = run_bench([str(p) for p in onnx_models], settings("onnxruntime"), work / "bench", say)
    write_json(report, work / "bench_onnxruntime.json")
    rows: dict[str, BenchRow] = {row.model: row for row in report.rows}
    cross: dict[str, dict[str, Any]] = {}
    for label, (_, path, _) in variants.items():
        if path is None or path.suffix != ".xml":
            continue
        say(f"{name}: bench {label} on openvino against FP32 on openvino")
        backend = "openvino"
        ov_report = run_bench([str(path)], settings(backend), work / f"bench_{backend}", say)
        write_json(ov_report, work / f"bench_{backend}.json")
        rows[str(path)] = ov_report.row(str(path), backend)
        say(f"{name}: {label} on openvino against FP32 on onnxruntime, interleaved")
        cross[str(path)] = cross_backend_ratio(
            path, backend, fp32, data, args.threads, args.seconds
        )
    macs = macs_per_sample(sample)
    table = {
        label: _figures(mode, path, reason, rows, cross, macs, peaks)
        for label, (mode, path, reason) in variants.items()
    }
    return {"macs_per_sample": macs, "fp32_onnx": str(fp32), "variants": table}


def _figures(
    mode: str,
    path: Path | None,
    reason: str | None,
    rows: dict[str, Any],
    cross: dict[str, dict[str, Any]],
    macs: float,
    peaks: dict[str, Any],
) -> dict[str, Any]:
    """One table row: latency ratio to FP32 ORT, drift, accuracy, size, share of peak."""
    if path is None:
        return {"status": reason}
    row = rows[str(path)]
    if row.status != "ok":
        return {"status": f"{row.status}: {row.reason}", "path": str(path)}
    same_backend = row.latency_ratio_to_reference
    if str(path) in cross:  # another backend than the FP32 reference: the in-process loop
        ratio, p50 = cross[str(path)]["ratio"], cross[str(path)]["p50_ms"]
    else:
        ratio, p50 = same_backend, (row.latency or {}).get("p50_ms")
    entries: list[dict[str, Any]] = list((row.drift or {}).values())
    drift = max(entries, key=lambda entry: entry["max_abs_error"], default={})
    accuracy = (row.metrics or {}).get("accuracy", {})
    peak_kind = "int8" if mode in INT8_MODES else "fp32"
    peak = peaks["int8_gops"] if peak_kind == "int8" else peaks["fp32_gflops"]
    gops = 2 * macs / (p50 / 1e3) / 1e9 if p50 else None
    return {
        "status": "ok",
        "path": str(path),
        "backend": row.backend,
        "p50_ms": p50,
        "ratio_to_fp32_onnxruntime": ratio,
        "speedup": 1 / ratio["median_ratio"] if ratio else None,
        "speedup_ci95": [1 / ratio["ci95"][1], 1 / ratio["ci95"][0]] if ratio else None,
        "ratio_to_fp32_same_backend": same_backend,
        "cosine": drift.get("cosine"),
        "top1_agreement": drift.get("top1_agreement"),
        "drift_against": drift.get("against"),
        "accuracy": accuracy.get("value"),
        "accuracy_drop": 0.0 - accuracy["change"] if accuracy.get("change") is not None else None,
        "size_bytes": row.size_bytes,
        "achieved_gops": gops,
        "peak": peak_kind,
        "fraction_of_peak": gops / peak if gops else None,
    }


def print_table(results: dict[str, Any], peaks: dict[str, Any]) -> None:
    print(
        f"peak at {peaks['threads']} thread(s), {peaks['size']}^3 GEMM: "
        f"FP32 {peaks['gops']['fp32_onnxruntime']:.1f} GFLOP/s (ORT MatMul), "
        f"{peaks['gops']['fp32_numpy']:.1f} (numpy); "
        f"INT8 {peaks['int8_gops']:.1f} GOP/s (ORT MatMulInteger)"
    )
    print(
        f"{'model':<17}{'variant':<34}{'p50 ms':>8}{'ratio to FP32 ORT [95% CI]':>29}"
        f"{'speedup':>8}{'cosine':>9}{'top-1':>7}{'acc drop':>9}{'MB':>6}{'GOP/s':>7}"
        f"{'% of peak':>13}"
    )
    for model, sample in results.items():
        for label, row in sample["variants"].items():
            if row["status"] != "ok":
                print(f"{model:<17}{label:<34}{row['status']}")
                continue
            ratio = row["ratio_to_fp32_onnxruntime"] or {}
            low, high = ratio.get("ci95", [float("nan")] * 2)
            ratio_text = f"{ratio.get('median_ratio', float('nan')):.3f} [{low:.3f}, {high:.3f}]"
            print(
                f"{model:<17}{label:<34}{_number(row['p50_ms'], 8, 3)}{ratio_text:>29}"
                f"{_number(row['speedup'], 7, 2)}x{_number(row['cosine'], 9, 5)}"
                f"{_number(row['top1_agreement'], 7, 3)}{_number(row['accuracy_drop'], 9, 4)}"
                f"{_number(row['size_bytes'] and row['size_bytes'] / 2**20, 6, 2)}"
                f"{_number(row['achieved_gops'], 7, 1)}"
                f"{_number(row['fraction_of_peak'] and 100 * row['fraction_of_peak'], 8, 1)}"
                f"% {row['peak']}"
            )


def _number(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="ORT, OpenVINO and GEMM threads")
    parser.add_argument("--seconds", type=float, default=3.0, help="min timed seconds per bench")
    parser.add_argument("--eval-limit", type=int, default=500, help="evaluation samples")
    parser.add_argument("--calibration-size", type=int, default=300)
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--gemm-runs", type=int, default=5)
    parser.add_argument("--samples", nargs="+", choices=SAMPLES, default=list(SAMPLES))
    parser.add_argument("--quick", action="store_true", help="1 s benches, 100 samples")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "quantize_speedup")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.eval_limit, args.calibration_size, args.gemm_runs = 1.0, 100, 100, 3

    out: Path = args.output
    say = lambda message: print(f"... {message}", file=sys.stderr)  # noqa: E731
    started = time.perf_counter()
    say(f"GEMM peaks ({args.gemm_size}^3, {args.threads} thread(s))")
    peaks = measure_peaks(args.gemm_size, args.gemm_runs, args.threads)
    results = {name: bench_sample(name, out, peaks, args, say) for name in args.samples}
    print_table(results, peaks)
    figures = {
        "settings": vars(args),
        "peaks": peaks,
        "samples": results,
        "wall_s": time.perf_counter() - started,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantize_speedup.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"wrote {out / 'quantize_speedup.json'} ({figures['wall_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
