"""Does dlopt's harness measure what the runtimes' own tools measure?

On the CNN sample (models/digits_cnn, exported to ONNX; a same-shaped stand-in CNN when the
sample's weights are not there yet), in interleaved rounds:
- dlopt's OpenVINO p50 (`run_bench`, a fresh worker) against OpenVINO's own `benchmark_app`
  (`-hint none -nthreads N -nstreams 1 -nireq 1 -api sync -infer_precision f32`);
- dlopt's ONNX Runtime p50 against a minimal hand-written loop (same session options).
Prints the per-round ratios (dlopt / peer) and their median; writes JSON. Target: within 5%.

    .venv/bin/python benchmarks/harness_fidelity.py --rounds 4 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "models" / "digits_cnn"
BATCH = 1

ORT_LOOP = r"""
import sys, time
import numpy as np, onnxruntime as ort
path, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
rng = np.random.default_rng(0)
feeds = [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(8)]
for i in range(50):
    session.run(None, {name: feeds[i % 8]})
samples, end = [], time.perf_counter_ns() + seconds * 1e9
while time.perf_counter_ns() < end or len(samples) < 10:
    start = time.perf_counter_ns()
    session.run(None, {name: feeds[len(samples) % 8]})
    samples.append(time.perf_counter_ns() - start)
print(np.median(samples) / 1e6)
"""


def model_path(workdir: Path) -> tuple[Path, str]:
    """The CNN sample exported to ONNX, or a stand-in with the same input and output."""
    weights = SAMPLE / "weights.pt"
    if weights.is_file():
        out = workdir / "digits_cnn"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dlopt",
                "export",
                f"{SAMPLE}/model.py:create_model",
                "-w",
                str(weights),
                "-f",
                "onnx",
                "-o",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        return next(out.glob("*.onnx")), "models/digits_cnn"
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    ).eval()
    path = workdir / "standin_cnn.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, 1, 32, 32),),
        str(path),
        input_names=["image"],
        output_names=["output"],
        dynamic_axes={"image": {0: "batch"}},
        dynamo=False,
    )
    return path, "stand-in CNN (image [batch,1,32,32] -> [batch,10]); sample weights missing"


def dlopt_p50(model: Path, backend: str, threads: int, seconds: float, workdir: Path) -> float:
    from dlopt.harness.bench import BenchSettings, run_bench

    settings = BenchSettings(
        backends=(backend,), batch_size=BATCH, threads=threads, min_time_s=seconds
    )
    report = run_bench([str(model)], settings, workdir / f"dlopt-{backend}")
    row = report.rows[0]
    if row.latency is None:
        raise SystemExit(f"dlopt bench failed: {row.reason}")
    return float(row.latency["p50_ms"])


def benchmark_app_p50(model: Path, threads: int, seconds: float) -> float:
    tool = Path(sys.executable).with_name("benchmark_app")
    result = subprocess.run(
        [
            str(tool),
            "-m",
            str(model),
            "-d",
            "CPU",
            "-hint",
            "none",
            "-nthreads",
            str(threads),
            "-nstreams",
            "1",
            "-nireq",
            "1",
            "-api",
            "sync",
            "-infer_precision",
            "f32",
            "-shape",
            f"image[{BATCH},1,32,32]",
            "-t",
            str(int(seconds)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Median:\s+([\d.]+) (ms|us)", result.stdout)
    if match is None:
        raise SystemExit(f"no median in benchmark_app output:\n{result.stdout[-2000:]}")
    return float(match.group(1)) / (1000 if match.group(2) == "us" else 1)


def ort_loop_p50(model: Path, threads: int, seconds: float) -> float:
    result = subprocess.run(
        [sys.executable, "-c", ORT_LOOP, str(model), str(threads), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "harness_fidelity.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        model, model_note = model_path(workdir)
        rounds = []
        for index in range(args.rounds):
            # Alternate who goes first so that neither side always runs on a warmer machine.
            pairs = {
                "openvino": (
                    lambda: dlopt_p50(model, "openvino", args.threads, args.seconds, workdir),
                    lambda: benchmark_app_p50(model, args.threads, args.seconds),
                ),
                "onnxruntime": (
                    lambda: dlopt_p50(model, "onnxruntime", args.threads, args.seconds, workdir),
                    lambda: ort_loop_p50(model, args.threads, args.seconds),
                ),
            }
            entry = {}
            for name, (ours, peer) in pairs.items():
                if index % 2 == 0:
                    ours_ms, peer_ms = ours(), peer()
                else:
                    peer_ms, ours_ms = peer(), ours()
                entry[name] = {
                    "dlopt_p50_ms": ours_ms,
                    "peer_p50_ms": peer_ms,
                    "ratio": ours_ms / peer_ms,
                }
                print(
                    f"round {index}: {name:12s} dlopt {ours_ms:.4f} ms  peer {peer_ms:.4f} ms  "
                    f"ratio {ours_ms / peer_ms:.3f}",
                    flush=True,
                )
            rounds.append(entry)
    summary = {
        name: {
            "median_ratio": statistics.median(r[name]["ratio"] for r in rounds),
            "peer": "benchmark_app" if name == "openvino" else "hand-written ORT loop",
        }
        for name in ("openvino", "onnxruntime")
    }
    for name, item in summary.items():
        verdict = "within 5%" if abs(item["median_ratio"] - 1) <= 0.05 else "OUTSIDE 5%"
        print(f"{name}: median ratio dlopt/{item['peer']} = {item['median_ratio']:.3f} ({verdict})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "model": model_note,
                "batch_size": BATCH,
                "threads": args.threads,
                "seconds": args.seconds,
                "rounds": rounds,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
