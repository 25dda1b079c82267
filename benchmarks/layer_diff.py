"""`dlopt diff` on the samples: what it finds, how long it takes, how much memory it holds.

1. Text transformer, FP32 ONNX against ONNX Runtime static INT8 (`dlopt quantize --mode
   static`), on 100, 300 and 1000 evaluation samples, each run in its own process: wall time,
   peak RSS, and whether an attention-mask Add (an Add fed by the `attention_mask` input) is
   named among the first three layers the diff lists (as the layer or as the quantized input
   it reads). Memory should not grow with the samples: statistics stream batch by batch.
2. Digits CNN, FP32 ONNX on ONNX Runtime against the NNCF INT8 IR on OpenVINO (`dlopt build
   --precision int8`): the share of convolutions matched by name.

Prints a table and writes JSON.

    .venv/bin/python benchmarks/layer_diff.py --json out/layer_diff.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SAMPLES = (100, 300, 1000)
# Runs the command given after it as a child and prints the child's peak RSS (KiB) and CPU
# seconds: the wrapper's RUSAGE_CHILDREN then covers that one child only. CPU time says more
# than wall time on a machine shared with other jobs.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)\n"
    "sys.exit(code)\n"
)


def dlopt(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dlopt", *args], check=True, capture_output=True)


def measured_diff(*args: str) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of one `dlopt diff` process."""
    command = [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "dlopt", "diff", *args]
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    peak_kib, cpu = result.stdout.strip().splitlines()[-1].split()
    return time.perf_counter() - start, float(cpu), int(peak_kib) / 1024


def mask_adds(model: Path) -> set[str]:
    """Add nodes with an input computed from the values of `attention_mask` alone (a Shape's
    output carries no values: the positions come from the mask's shape, not its content)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    sources: dict[str, set[str]] = {i.name: {i.name} for i in graph.input}
    adds = set()
    for node in graph.node:
        reached = [sources.get(name, set()) for name in node.input]
        for output in node.output:
            flows = reached and node.op_type not in ("Shape", "Size")
            sources[output] = set().union(*reached) if flows else set()
        if node.op_type == "Add" and any(r == {"attention_mask"} for r in reached):
            adds.add(node.name)
    return adds


def transformer(work: Path) -> list[dict[str, object]]:
    sample = MODELS / "text_transformer"
    fp32, int8 = work / "tt" / "model.onnx", work / "tt-int8" / "model.onnx"
    dlopt(
        "export",
        f"{sample / 'model.py'}:create_model",
        "-w",
        str(sample / "weights.pt"),
        "-f",
        "onnx",
        "-o",
        str(fp32.parent),
    )
    dlopt(
        "quantize",
        str(fp32),
        "--mode",
        "static",
        "--calibration",
        f"{sample / 'data.py'}:calibration",
        # No budget: the model whose attention-mask Adds INT8 broke is what diff must explain.
        "--max-drift",
        "none",
        "-o",
        str(int8.parent),
    )
    adds = mask_adds(fp32)
    rows = []
    for samples in SAMPLES:
        report = work / f"tt_{samples}.json"
        seconds, cpu, peak = measured_diff(
            str(fp32),
            str(int8),
            "--data",
            f"{sample / 'data.py'}:evaluation",
            "--samples",
            str(samples),
            "--json",
            str(report),
        )
        result = json.loads(report.read_text())
        first_three = result["worst"][:3]
        named = [
            {
                "layer": layer["layer"],
                "op_type": layer["op_type"],
                "reads_quantized": [q["layer"] for q in layer["quantized_inputs"]],
            }
            for layer in first_three
        ]
        names = {layer["layer"] for layer in named}
        names |= {q for layer in named for q in layer["reads_quantized"]}
        found = sorted(names & adds)
        first = result["first_beyond_tolerance"]
        rows.append(
            {
                "model": "text_transformer FP32 vs ORT static INT8",
                "samples": result["samples"],
                "seconds": round(seconds, 1),
                "cpu_seconds": round(cpu, 1),
                "peak_rss_mib": round(peak, 1),
                "matched_layers": result["matched_layers"],
                "first_beyond_tolerance": first and f"{first['layer']} ({first['op_type']})",
                "first_three": named,
                "mask_adds_named": found,
            }
        )
    return rows


def cnn(work: Path) -> dict[str, object]:
    sample = MODELS / "digits_cnn"
    fp32, ir = work / "cnn" / "model.onnx", work / "cnn-ov" / "model.xml"
    dlopt(
        "export",
        f"{sample / 'model.py'}:create_model",
        "-w",
        str(sample / "weights.pt"),
        "-f",
        "onnx",
        "-o",
        str(fp32.parent),
    )
    dlopt(
        "build",
        str(fp32),
        "--backend",
        "openvino",
        "--precision",
        "int8",
        "--calibration",
        f"{sample / 'data.py'}:calibration",
        "-o",
        str(ir.parent),
    )
    report = work / "cnn.json"
    seconds, cpu, peak = measured_diff(
        str(fp32), str(ir), "--data", "sample:digits_cnn", "--samples", "300", "--json", str(report)
    )
    result = json.loads(report.read_text())
    found, total = result["coverage_by_op_type"]["Conv"]
    return {
        "model": "digits_cnn FP32 ONNX (onnxruntime) vs NNCF INT8 IR (openvino)",
        "samples": result["samples"],
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mib": round(peak, 1),
        "conv_matched": found,
        "conv_total": total,
        "conv_matched_share": found / total,
        "min_conv_cosine": min(
            layer["cosine"] for layer in result["layers"] if layer["op_type"] == "Conv"
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("out/layer_diff.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = transformer(Path(folder))
        convolutions = cnn(Path(folder))
    print(f"{'samples':>8} {'wall s':>7} {'CPU s':>6} {'peak MiB':>9}  first three (its input)")
    for row in rows:
        names = "; ".join(
            f"{n['layer']} ({', '.join(n['reads_quantized']) or '-'})" for n in row["first_three"]
        )
        print(
            f"{row['samples']:>8} {row['seconds']:>7} {row['cpu_seconds']:>6} "
            f"{row['peak_rss_mib']:>9}  {names}"
        )
        print(f"{'':>34}mask Adds named: {', '.join(row['mask_adds_named']) or 'NONE'}")
    print(
        f"CNN vs NNCF IR: {convolutions['conv_matched']}/{convolutions['conv_total']} convolutions "
        f"matched by name, min cosine {convolutions['min_conv_cosine']:.5f}, "
        f"{convolutions['seconds']} s ({convolutions['cpu_seconds']} s CPU), "
        f"{convolutions['peak_rss_mib']} MiB"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"transformer": rows, "cnn": convolutions}, indent=1) + "\n")
    print(f"wrote {args.json}")
    ok = all(row["mask_adds_named"] for row in rows) and convolutions["conv_matched_share"] >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
