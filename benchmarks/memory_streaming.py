"""Peak memory with a 10x larger evaluation set stays flat: data streams batch by batch.

Builds two .npz evaluation sets from the digits CNN sample (the test split repeated 10 and 100
times, 3,600 and 36,000 images: 14 and 141 MiB of inputs), benches the exported CNN on each
(one worker per run, ONNX Runtime) and compares the workers' peak RSS. Prints a table and
writes JSON.

    .venv/bin/python benchmarks/memory_streaming.py --json out/memory_streaming.json
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("out/memory_streaming.json"))
    args = parser.parse_args()
    dlopt = [sys.executable, "-m", "dlopt"]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        subprocess.run(
            [
                *dlopt,
                "export",
                f"{SAMPLE / 'model.py'}:create_model",
                "-w",
                str(SAMPLE / "weights.pt"),
                "-f",
                "onnx",
                "-o",
                str(work / "cnn"),
            ],
            check=True,
            capture_output=True,
        )
        for repeats in REPEATS:
            data_path = work / f"eval_{repeats}.npz"
            samples = evaluation_npz(data_path, repeats)
            report = work / f"bench_{repeats}.json"
            subprocess.run(
                [
                    *dlopt,
                    "bench",
                    str(work / "cnn" / "model.onnx"),
                    "-b",
                    "onnxruntime",
                    "--data",
                    str(data_path),
                    "--batch-size",
                    "32",
                    "--iterations",
                    "50",
                    "--json",
                    str(report),
                    "-o",
                    str(work / f"jobs_{repeats}"),
                ],
                check=True,
                capture_output=True,
            )
            row = json.loads(report.read_text())["rows"][0]
            results.append(
                {
                    "samples": samples,
                    "data_mib": data_path.stat().st_size / 2**20,
                    "peak_rss_mib": row["memory"]["peak_rss_bytes"] / 2**20,
                    "evaluated": row["samples"],
                }
            )
    print(f"{'samples':>8} {'data MiB':>9} {'peak RSS MiB':>13}")
    for entry in results:
        print(f"{entry['samples']:>8} {entry['data_mib']:>9.1f} {entry['peak_rss_mib']:>13.1f}")
    growth = results[1]["peak_rss_mib"] - results[0]["peak_rss_mib"]
    data_growth = results[1]["data_mib"] - results[0]["data_mib"]
    print(f"10x more data (+{data_growth:.0f} MiB) moved peak RSS by {growth:+.1f} MiB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": results, "peak_rss_growth_mib": growth}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
