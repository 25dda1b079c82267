"""How long static INT8 takes with dlopt against ONNX Runtime's and NNCF's own, on the same data.

A random-init torchvision model (default ResNet-50 at 224 x 224, exported once with `dlopt
export`) and N synthetic calibration images in one .npz. Each tool runs in its own process under
`/usr/bin/time` (wall, CPU, peak RSS), the tools alternated round by round (the machine's speed
drifts between minutes):

- `ort by hand`: `quant_pre_process`, then `quantize_static` (QDQ, QUInt8 activations, QInt8
  per-channel weights, MinMax): what dlopt's ORT static runs, and nothing else;
- `dlopt static`: `dlopt quantize --mode static --max-drift none --no-speed-check` (the same
  quantization, plus the ONNX normalization, the drift measured against FP32 on the N
  samples, the manifest and the metadata strip);
- `dlopt auto`: `dlopt quantize` with its defaults (--mode auto: static and dynamic INT8, each
  checked against the default budget and timed against FP32; then the speed check);
- `nncf by hand`: `openvino.convert_model` + `nncf.quantize` + `openvino.save_model`;
- `dlopt openvino`: `dlopt quantize --target openvino --mode static --max-drift none
  --no-speed-check` (the same NNCF call, plus drift and the manifest).

Prints a table (median over rounds; dlopt's time as a multiple of the hand-run tool's) and
writes JSON.

    .venv/bin/python benchmarks/quantize_time.py --model resnet50 --samples 100 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DLOPT = [sys.executable, "-m", "dlopt"]

ORT_BY_HAND = """
import sys
import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

source, data, prepared, output = sys.argv[1:5]

class Reader(CalibrationDataReader):
    def __init__(self):
        self.images = np.load(data)["image"]
        self.index = 0

    def get_next(self):
        if self.index >= len(self.images):
            return None
        self.index += 1
        return {"image": self.images[self.index - 1 : self.index]}

quant_pre_process(source, prepared)
quantize_static(prepared, output, Reader(), quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                per_channel=True, calibrate_method=CalibrationMethod.MinMax)
"""

NNCF_BY_HAND = """
import sys
import numpy as np
import nncf
import openvino as ov

source, data, output = sys.argv[1:4]
images = np.load(data)["image"]
model = ov.convert_model(source)
dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
quantized = nncf.quantize(model, dataset, subset_size=len(images))
ov.save_model(quantized, output)
"""


def timed(command: list[str], folder: Path) -> dict[str, Any]:
    """Run `command` under /usr/bin/time: wall and CPU seconds, peak RSS, exit code."""
    record = folder / "time.txt"
    folder.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        ["/usr/bin/time", "-o", str(record), "-f", "%e %U %S %M", *command],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    wall, user, system, peak_kb = record.read_text().split()[-4:]
    return {
        "exit_code": completed.returncode,
        "wall_s": float(wall),
        "cpu_s": float(user) + float(system),
        "peak_rss_mb": int(peak_kb) / 1024,
        "error": completed.stderr.strip().splitlines()[-1:] if completed.returncode else [],
    }


def commands(model: Path, data: Path, samples: int) -> dict[str, Any]:
    """Each tool's command, given the folder it writes into."""
    size = ["--calibration-size", str(samples), "--eval-size", str(samples)]
    quiet = ["--max-drift", "none", "--no-speed-check"]

    def dlopt(*extra: str) -> Any:
        def command(out: Path) -> list[str]:
            quantize = [*DLOPT, "quantize", str(model), "--calibration", str(data), *size]
            return [*quantize, *extra, "-o", str(out / "model")]

        return command

    def script(code: str, *outputs: str) -> Any:
        def command(out: Path) -> list[str]:
            run = [sys.executable, "-c", textwrap.dedent(code), str(model), str(data)]
            return run + [str(out / name) for name in outputs]

        return command

    return {
        "ort by hand": script(ORT_BY_HAND, "prepared.onnx", "model.onnx"),
        "dlopt static": dlopt("--mode", "static", *quiet),
        "dlopt auto": dlopt(),
        "nncf by hand": script(NNCF_BY_HAND, "model.xml"),
        "dlopt openvino": dlopt("--target", "openvino", "--mode", "static", *quiet),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="a torchvision model name")
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    parser.add_argument("--samples", type=int, default=100, help="calibration images")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "quantize_time.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dlopt-quantize-time-") as scratch:
        work = Path(scratch)
        spec = f"image:batch=1x3x{args.size}x{args.size}"
        export = subprocess.run(
            [*DLOPT, "export", f"torchvision:{args.model}", "-i", spec, "-f", "onnx",
             "-o", str(work / "fp32")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if export.returncode:
            print(export.stderr, file=sys.stderr)
            return 1
        model = work / "fp32" / "model.onnx"
        rng = np.random.default_rng(0)
        images = rng.standard_normal((args.samples, 3, args.size, args.size), dtype=np.float32)
        data = work / "calibration.npz"
        np.savez(data, image=images)

        tools = commands(model, data, args.samples)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
        names = list(tools)
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                folder = work / f"r{round_index}" / name.replace(" ", "_")
                result = timed(tools[name](folder), folder)
                runs[name].append(result)
                print(f"round {round_index + 1} {name}: {result}", file=sys.stderr, flush=True)

    rows = {name: _summary(results) for name, results in runs.items()}
    pairs = {"dlopt static": "ort by hand", "dlopt auto": "ort by hand"}
    pairs["dlopt openvino"] = "nncf by hand"
    print(f"\n{args.model} {args.size}x{args.size}, {args.samples} calibration images, "
          f"{args.rounds} round(s), median")  # fmt: skip
    print(f"{'tool':<16}{'wall s':>9}{'CPU s':>9}{'peak RSS MB':>13}{'x hand-run':>12}  exit")
    for name, row in rows.items():
        base = pairs.get(name)
        ratio = f"{row['wall_s'] / rows[base]['wall_s']:.2f}" if base else ""
        print(
            f"{name:<16}{row['wall_s']:>9.1f}{row['cpu_s']:>9.1f}{row['peak_rss_mb']:>13.0f}"
            f"{ratio:>12}  {row['exit_codes']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"model": args.model, "size": args.size, "samples": args.samples}
    args.out.write_text(
        json.dumps({"settings": {**settings, "rounds": args.rounds}, "rows": rows, "runs": runs},
                   indent=2) + "\n"
    )  # fmt: skip
    print(f"wrote {args.out}")
    return 0


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "wall_s": statistics.median(r["wall_s"] for r in results),
        "cpu_s": statistics.median(r["cpu_s"] for r in results),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "exit_codes": sorted({r["exit_code"] for r in results}),
    }


if __name__ == "__main__":
    sys.exit(main())
