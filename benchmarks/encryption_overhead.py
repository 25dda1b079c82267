"""What encryption at rest costs at load time: opening a model from its file against
decrypting its `.enc` in memory and opening it from bytes, interleaved, on ONNX Runtime and
OpenVINO (the digits CNN by default), plus encrypt and decrypt time per MB.

Each round loads every variant once, in turn, so the machine's drift hits them alike; the ratio
of medians has a paired bootstrap 95% interval. Prints a table and writes JSON.

    .venv/bin/python benchmarks/encryption_overhead.py --rounds 30 --json out/encryption.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dlopt.harness.latency import ratio_of_medians

ROOT = Path(__file__).resolve().parents[1]
SOURCE = f"{ROOT / 'models/digits_cnn/model.py'}:create_model"
WEIGHTS = ROOT / "models/digits_cnn/weights.pt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", type=Path, default=Path("out/encryption_overhead.json"))
    args = parser.parse_args()
    import onnxruntime as ort
    import openvino as ov

    from dlopt.optimize.export import ExportOptions, export_model
    from dlopt.trust.encryption import decrypt_file, encrypt_artifact
    from dlopt.trust.keys import load_model_key, write_model_key

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = export_model(SOURCE, folder / "fp32", (), WEIGHTS, ExportOptions(("onnx",)))[0].path
        key = load_model_key(write_model_key(folder / "model.key"))
        assert key is not None
        encrypted = encrypt_artifact(model, key, folder / "enc")
        size_mb = model.stat().st_size / 1e6
        core = ov.Core()

        def ort_from_bytes() -> object:
            data = next(iter(decrypt_file(encrypted, key).values()))
            return ort.InferenceSession(data, providers=["CPUExecutionProvider"])

        def ov_from_bytes() -> object:
            import numpy as np

            data = next(iter(decrypt_file(encrypted, key).values()))
            read = core.read_model(model=data, weights=ov.Tensor(np.zeros(0, np.uint8)))
            return core.compile_model(read, "CPU")

        loaders: dict[str, Callable[[], object]] = {
            "ort file": lambda: ort.InferenceSession(
                str(model), providers=["CPUExecutionProvider"]
            ),
            "ort decrypt+bytes": ort_from_bytes,
            "ov file": lambda: core.compile_model(str(model), "CPU"),
            "ov decrypt+bytes": ov_from_bytes,
            "encrypt": lambda: encrypt_artifact(model, key, folder / f"e{time.perf_counter_ns()}"),
            "decrypt": lambda: decrypt_file(encrypted, key),
        }
        samples: dict[str, list[int]] = {name: [] for name in loaders}
        for load in loaders.values():
            load()  # untimed: page cache, lazy imports
        for _ in range(args.rounds):
            for name, load in loaders.items():
                start = time.perf_counter_ns()
                load()
                samples[name].append(time.perf_counter_ns() - start)
    results: dict[str, object] = {"model_mb": size_mb, "rounds": args.rounds}
    print(f"digits CNN ONNX, {size_mb:.2f} MB, {args.rounds} interleaved rounds")
    for backend in ("ort", "ov"):
        ratio = ratio_of_medians(samples[f"{backend} decrypt+bytes"], samples[f"{backend} file"])
        file_ms = sorted(samples[f"{backend} file"])[args.rounds // 2] / 1e6
        results[backend] = {"file_load_ms": file_ms, "ratio": ratio.to_dict()}
        low, high = ratio.ci95
        print(
            f"{backend}: load from file {file_ms:.1f} ms; decrypt + load from bytes / file = "
            f"{ratio.median_ratio:.3f} [{low:.3f}, {high:.3f}]"
        )
    for name in ("encrypt", "decrypt"):
        median_ms = sorted(samples[name])[args.rounds // 2] / 1e6
        results[name] = {"median_ms": median_ms, "mb_per_s": size_mb / (median_ms / 1e3)}
        print(f"{name}: {median_ms:.1f} ms ({size_mb / (median_ms / 1e3):.0f} MB/s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**results, "samples_ns": samples}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
