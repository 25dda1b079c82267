"""Harness overhead per inference call: dlopt's timed call against a bare runtime call.

On a trivial ONNX model (one Add), in one process, interleaved: each round times one call
through dlopt's onnxruntime session and the worker's timing function (`_time_one`: feed
checking, output naming) and one bare `InferenceSession.run`. The difference of medians is
what dlopt adds to every measured call. Prints a table and writes JSON.

    .venv/bin/python benchmarks/harness_overhead.py --rounds 20000 --json out/harness_overhead.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from dlopt.backends import get_backend
from dlopt.backends.base import LoadOptions
from dlopt.harness.latency import ratio_of_medians
from dlopt.harness.statistics import median_interval
from dlopt.harness.worker import _time_one


def trivial_model(folder: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    path = folder / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--json", type=Path, default=Path("out/harness_overhead.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = trivial_model(Path(folder))
        session = get_backend("onnxruntime").load(str(path), LoadOptions(threads=1))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        bare = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"x": np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)}
        for _ in range(1000):  # warm-up both paths
            _time_one(session, feed)
            bare.run(None, feed)
        dlopt_ns, bare_ns = [], []
        for _ in range(args.rounds):
            dlopt_ns.append(_time_one(session, feed))
            started = time.perf_counter_ns()
            bare.run(None, feed)
            bare_ns.append(time.perf_counter_ns() - started)
    ratio = ratio_of_medians(dlopt_ns, bare_ns)
    overhead_us = (np.median(dlopt_ns) - np.median(bare_ns)) / 1e3
    results = {
        "rounds": args.rounds,
        "dlopt_median_us": float(np.median(dlopt_ns)) / 1e3,
        "dlopt_median_ci95_us": [v / 1e3 for v in median_interval(np.asarray(dlopt_ns))],
        "bare_median_us": float(np.median(bare_ns)) / 1e3,
        "bare_median_ci95_us": [v / 1e3 for v in median_interval(np.asarray(bare_ns))],
        "overhead_per_call_us": float(overhead_us),
        "ratio": ratio.to_dict(),
    }
    print(f"{'loop':<8} {'median us':>10} {'95% CI':>20}")
    for name in ("dlopt", "bare"):
        low, high = results[f"{name}_median_ci95_us"]
        print(f"{name:<8} {results[f'{name}_median_us']:>10.2f} [{low:8.2f}, {high:8.2f}]")
    print(
        f"overhead per call: {overhead_us:.2f} us; ratio dlopt/bare "
        f"{ratio.median_ratio:.3f} [{ratio.ci95[0]:.3f}, {ratio.ci95[1]:.3f}]"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
