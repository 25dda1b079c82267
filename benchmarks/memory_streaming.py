"""Peak memory with a 10x larger evaluation set stays flat: data and outputs both stream.

Builds two .npz evaluation sets from the digits CNN sample (the test split repeated 10 and 100
times, 3,600 and 36,000 images: 14 and 141 MiB of inputs) and benches two models on each with
ONNX Runtime, one worker per run:
- `cnn`: the exported digits CNN (10 logits per image: the outputs are small);
- `features`: a one-node ONNX graph (Relu) whose output is as large as its input (4 KiB per
  image: 141 MiB of outputs at 36,000 images), so that holding every output in memory shows.
Compares the workers' peak RSS across the two sizes. Prints a table and writes JSON.

    .venv/bin/python benchmarks/memory_streaming.py --json out/memory_streaming.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "models" / "digits_cnn"
REPEATS = (10, 100)


def evaluation_npz(path: Path, repeats: int) -> int:
    sys.path.insert(0, str(SAMPLE))
    import data  # the sample's own numpy-only data module

    batches = list(data.evaluation(batch_size=360))
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["labels"] for b in batches])
    np.savez(path, image=np.tile(images, (repeats, 1, 1, 1)), labels=np.tile(labels, repeats))
    return len(labels) * repeats


def features_model(path: Path) -> None:
    """image [batch, 1, 32, 32] -> Relu -> output of the same shape."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 1, 32, 32]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["features"])],
        "features",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def bench(model: Path, data_path: Path, work: Path, name: str) -> dict[str, object]:
    report = work / f"bench_{name}.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dlopt",
            "bench",
            str(model),
            "-b",
            "onnxruntime",
            "--data",
            str(data_path),
            "--batch-size",
            "32",
            "--iterations",
            "50",
            "--threads",
            "1",
            "--json",
            str(report),
            "-o",
            str(work / f"jobs_{name}"),
        ],
        check=True,
        capture_output=True,
    )
    row = json.loads(report.read_text())["rows"][0]
    assert row["status"] == "ok", row["reason"]
    return {"peak_rss_mib": row["memory"]["peak_rss_bytes"] / 2**20, "evaluated": row["samples"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("out/memory_streaming.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        subprocess.run(
            [
                *(sys.executable, "-m", "dlopt", "export"),
                f"{SAMPLE / 'model.py'}:create_model",
                *("-w", str(SAMPLE / "weights.pt"), "-f", "onnx", "-o", str(work / "cnn")),
            ],
            check=True,
            capture_output=True,
        )
        models = {"cnn": work / "cnn" / "model.onnx", "features": work / "features.onnx"}
        features_model(models["features"])
        for repeats in REPEATS:
            data_path = work / f"eval_{repeats}.npz"
            samples = evaluation_npz(data_path, repeats)
            for model_name, model in models.items():
                measured = bench(model, data_path, work, f"{model_name}_{repeats}")
                output_mib = samples * (10 if model_name == "cnn" else 1024) * 4 / 2**20
                results.append(
                    {
                        "model": model_name,
                        "samples": samples,
                        "data_mib": data_path.stat().st_size / 2**20,
                        "outputs_mib": output_mib,
                        **measured,
                    }
                )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'model':>9} {'samples':>8} {'data MiB':>9} {'outputs MiB':>12} {'peak RSS MiB':>13}")
    for entry in results:
        print(
            f"{entry['model']:>9} {entry['samples']:>8} {entry['data_mib']:>9.1f} "
            f"{entry['outputs_mib']:>12.1f} {entry['peak_rss_mib']:>13.1f}"
        )
    growth = {}
    for model_name in ("cnn", "features"):
        small, large = (entry for entry in results if entry["model"] == model_name)
        growth[model_name] = large["peak_rss_mib"] - small["peak_rss_mib"]
        print(f"{model_name}: 10x more samples moved peak RSS by {growth[model_name]:+.1f} MiB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": results, "peak_rss_growth_mib": growth}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
