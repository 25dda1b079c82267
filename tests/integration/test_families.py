"""The families users bring, each a small member, through export -> quantize -> bench.

Random weights, small inputs, few samples: this checks that every step works on each
architecture (or says in one line why), not accuracy. Costs on the 2-core CI machine (one
test, measured with `pytest --durations=0 -n 1`) are in the README's test section; the ones
over ~25 s are marked `slow` (they still run in CI: `-m "not slow"` skips them locally).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.hf_models import save_tiny_model, write_text_files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class Family:
    name: str
    source: str  # torchvision:NAME, fixture factory, or "hf:<family>" (built in tmp)
    inputs: tuple[str, ...] = ()
    mode: str = "static"
    calibration: str = "synthetic"  # or "text" (the tiny tokenizer's sentences)


IMAGE_64 = ("image:batch=1x3x64x64",)
FAMILIES = [
    Family("resnet", "torchvision:resnet18", IMAGE_64),
    Family("mobilenet_v3", "torchvision:mobilenet_v3_small", IMAGE_64),
    Family("efficientnet_b0", "torchvision:efficientnet_b0", IMAGE_64),
    Family("regnet", "torchvision:regnet_y_400mf", IMAGE_64),
    Family("convnext", f"{FIXTURES / 'family_models.py'}:convnext_small_blocks", IMAGE_64),
    Family("vit", f"{FIXTURES / 'family_models.py'}:vit_tiny", ("image:batch=1x3x32x32",)),
    Family("shufflenet_v2", "torchvision:shufflenet_v2_x0_5", IMAGE_64),
    Family("deeplabv3", "torchvision:deeplabv3_mobilenet_v3_large", IMAGE_64),
    Family(
        "lstm",
        f"{FIXTURES / 'family_models.py'}:lstm_classifier",
        ("tokens:batch=1x12:int64:0..99",),
        mode="dynamic",
    ),
    Family("distilbert", "hf:distilbert", calibration="text"),
    Family("bert", "hf:bert-classifier", calibration="text"),
    Family("gpt2", "hf:gpt2", mode="dynamic", calibration="text"),
]
SLOW = {"deeplabv3", "efficientnet_b0", "regnet", "mobilenet_v3"}


def _params() -> list[object]:
    return [
        pytest.param(f, id=f.name, marks=[pytest.mark.slow] if f.name in SLOW else [])
        for f in FAMILIES
    ]


@pytest.fixture(autouse=True)
def _scratch_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT's failed symbolic shape inference writes temporary files into the working
    directory: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)


def _no_budget() -> tuple[str, ...]:
    """Opt out of a default accuracy budget where quantize has one (random weights here:
    these tests check that each step works, not accuracy)."""
    from dlopt.optimize.quantize import options

    return ("none",) if hasattr(options, "NO_BUDGET") else ()


@pytest.mark.parametrize("family", _params())
def test_family_exports_quantizes_and_benches(family: Family, tmp_path: Path) -> None:
    from dlopt.harness.bench import BenchSettings, run_bench
    from dlopt.optimize.export import ExportOptions, export_model
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model
    from dlopt.text_data import resolve_tokenizer

    source = family.source
    if source.startswith("hf:"):
        folder = save_tiny_model(source[3:], tmp_path / source[3:])
        source = f"hf:{folder}"
    exported = export_model(
        source, tmp_path / "fp32", family.inputs, options=ExportOptions(formats=("onnx",))
    )
    fp32 = exported[0].path
    assert exported[0].parity.passed

    calibration = "synthetic"
    if family.calibration == "text":
        text, _ = write_text_files(tmp_path / "text")
        calibration = resolve_tokenizer(f"text:{text}", str(fp32))  # tokenizer from manifest
    quantized = quantize_model(
        str(fp32),
        tmp_path / "int8",
        QuantizeOptions(
            mode=family.mode,
            calibration=calibration if family.mode == "static" else None,
            calibration_size=8,
            evaluation=calibration,
            evaluation_size=8,
            max_drift=_no_budget(),
        ),
    )
    drift = quantized.details["drift"]
    assert drift["samples"] == 8
    assert np.isfinite(drift["cosine"])

    report = run_bench(
        [str(fp32), str(quantized.path)],
        BenchSettings(reference=str(fp32), data=calibration, eval_limit=8, iterations=20),
        tmp_path / "bench",
    )
    rows = {row.model: row for row in report.rows}
    assert {row.status for row in report.rows} == {"ok"}, [r.reason for r in report.rows]
    ratio = rows[str(quantized.path)].latency_ratio_to_reference
    assert ratio is not None and ratio["median_ratio"] > 0
