"""dlopt bench on real backends: agreement, drift, crashes and hangs, the CLI and the schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.harness.bench import BenchSettings, run_bench
from dlopt.harness.bench_report import bench_schema, render_markdown
from dlopt.harness.latency import WarmupPolicy

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bench_models.py"
QUICK_WARMUP = WarmupPolicy(window_runs=3, max_runs=12)


def _export(factory: str, path: Path) -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_models_for_export", FIXTURES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, factory)().eval()
    torch.onnx.export(
        model,
        (torch.randn(2, 8),),
        str(path),
        input_names=["x"],
        output_names=["output"],
        dynamic_axes={"x": {0: "batch"}},
        dynamo=False,
    )
    return str(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    np.savez(
        folder / "eval.npz",
        x=rng.standard_normal((40, 8)).astype(np.float32),
        labels=rng.integers(0, 4, 40),
    )
    return {
        "dir": str(folder),
        "data": str(folder / "eval.npz"),
        "fp32": _export("small_classifier", folder / "fp32.onnx"),
        "perturbed": _export("perturbed_classifier", folder / "perturbed.onnx"),
    }


def test_backends_agree_on_fp32_and_a_perturbed_model_drifts(workspace: dict[str, str]) -> None:
    reference = f"{FIXTURES}:small_classifier"
    settings = BenchSettings(
        backends=("torch", "onnxruntime", "openvino"),
        data=workspace["data"],
        reference=reference,
        batch_size=4,
        threads=1,
        iterations=30,
        warmup=QUICK_WARMUP,
        timeout_s=120,
    )

    report = run_bench(
        [workspace["fp32"], workspace["perturbed"]], settings, Path(workspace["dir"]) / "run"
    )

    for backend in ("onnxruntime", "openvino"):
        fp32 = report.row(workspace["fp32"], backend)
        assert fp32.status == "ok", fp32.reason
        assert fp32.drift is not None
        assert fp32.drift["output"]["max_abs_error"] < 1e-4
        assert fp32.drift["output"]["top1_agreement"] == 1.0
        assert fp32.drift["output"]["against"] == f"{reference} on torch"
        perturbed = report.row(workspace["perturbed"], backend)
        assert perturbed.drift is not None
        assert perturbed.drift["output"]["max_abs_error"] > 1e-2
        assert perturbed.metrics is not None and perturbed.metrics["accuracy"]["reference"] > 0
        assert fp32.latency is not None and fp32.latency["mode"] == "interleaved"
        assert fp32.latency["runs"] == 30
        assert fp32.memory is not None
        assert fp32.memory["peak_rss_bytes"] >= fp32.memory["rss_after_load_bytes"] > 0
    assert report.row(workspace["fp32"], "openvino").info["precision_hint"] == "f32"
    assert report.row(workspace["fp32"], "torch").status == "skipped"
    assert report.row(reference, "torch").latency is not None  # solo on its backend
    assert report.row(reference, "torch").info["threads"] == 1
    jsonschema.validate(report.to_dict(), bench_schema())
    assert workspace["perturbed"] in render_markdown(report)


def test_max_iterations_stops_timed_runs_before_min_time(
    workspace: dict[str, str], tmp_path: Path
) -> None:
    settings = BenchSettings(
        min_time_s=60, max_iterations=7, warmup=QUICK_WARMUP, threads=1, timeout_s=120
    )

    report = run_bench([workspace["fp32"]], settings, tmp_path)

    row = report.row(workspace["fp32"], "onnxruntime")
    assert row.status == "ok", row.reason
    assert row.latency is not None and row.latency["runs"] == 7


def test_crash_and_hang_become_failed_rows_while_the_rest_complete(tmp_path: Path) -> None:
    models = [f"{FIXTURES}:{name}" for name in ("segfault_net", "hanging_net", "small_classifier")]
    settings = BenchSettings(
        backends=("torch",), iterations=20, warmup=QUICK_WARMUP, timeout_s=25, threads=1
    )

    report = run_bench(models, settings, tmp_path)

    crashed, hung, healthy = (report.row(model, "torch") for model in models)
    assert crashed.status == "failed" and "SIGSEGV" in (crashed.reason or "")
    assert hung.status == "failed" and "timed out" in (hung.reason or "")
    assert healthy.status == "ok", healthy.reason
    assert healthy.latency is not None and healthy.latency["runs"] == 20
    jsonschema.validate(report.to_dict(), bench_schema())


def test_a_worker_out_of_memory_fails_its_row_while_the_rest_complete(tmp_path: Path) -> None:
    # The cap bounds the hog (it would stop by itself at 4 GiB); the healthy worker fits well
    # under it (torch's import maps about 0.65 GB of address space, its peak RSS is ~0.25 GB).
    limit_mb = 1536
    hog, healthy = (f"{FIXTURES}:{name}" for name in ("memory_hog_net", "small_classifier"))
    json_path = tmp_path / "bench.json"

    result = CliRunner().invoke(
        app,
        [
            "bench",
            hog,
            healthy,
            "--backend",
            "torch",
            "--threads",
            "1",
            "--iterations",
            "20",
            "--memory-limit",
            str(limit_mb),
            "--timeout",
            "60",
            "--json",
            str(json_path),
            "-o",
            str(tmp_path / "work"),
        ],
    )

    assert result.exit_code == 0, result.output
    data = json.loads(json_path.read_text())
    jsonschema.validate(data, bench_schema())
    rows = {row["model"]: row for row in data["rows"]}
    assert rows[hog]["status"] == "failed"
    assert "out of memory" in rows[hog]["reason"], rows[hog]["reason"]
    assert f"{limit_mb} MB" in rows[hog]["reason"]
    assert rows[healthy]["status"] == "ok", rows[healthy]["reason"]
    assert rows[healthy]["latency"]["runs"] == 20
    assert rows[healthy]["memory"]["peak_rss_bytes"] < limit_mb << 20
    assert data["settings"]["memory_limit_mb"] == limit_mb


def test_memory_limit_is_documented_and_checked() -> None:
    runner = CliRunner()

    assert "--memory-limit" in runner.invoke(app, ["bench", "--help"]).output
    result = runner.invoke(app, ["bench", f"{FIXTURES}:small_classifier", "--memory-limit", "0"])
    assert result.exit_code == 2
    assert "memory_limit_mb is 0" in result.stderr


def test_cli_writes_valid_json_and_markdown(workspace: dict[str, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            workspace["perturbed"],
            "--reference",
            workspace["fp32"],
            "--backend",
            "onnxruntime",
            "--data",
            workspace["data"],
            "--iterations",
            "25",
            "--json",
            str(tmp_path / "bench.json"),
            "--md",
            str(tmp_path / "bench.md"),
            "-o",
            str(tmp_path / "work"),
        ],
    )

    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    jsonschema.validate(data, bench_schema())
    perturbed = next(row for row in data["rows"] if row["model"] == workspace["perturbed"])
    ratio = perturbed["latency_ratio_to_reference"]
    assert ratio["ci95"][0] <= ratio["median_ratio"] <= ratio["ci95"][1]
    assert "| onnxruntime |" in (tmp_path / "bench.md").read_text()


def test_cli_unknown_backend_exits_2(workspace: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["bench", workspace["fp32"], "--backend", "tensorflow"])

    assert result.exit_code == 2
    assert "Known backends: torch, onnxruntime, openvino, tensorrt" in result.output


def test_provider_cpu_is_used_and_recorded(workspace: dict[str, str], tmp_path: Path) -> None:
    report = run_bench(
        [workspace["fp32"]],
        BenchSettings(
            backends=("onnxruntime",), iterations=10, warmup=QUICK_WARMUP, provider="cpu"
        ),
        tmp_path,
    )

    row = report.row(workspace["fp32"], "onnxruntime")
    assert row.status == "ok", row.reason
    assert row.info["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--provider", "cuda"], "no CUDAExecutionProvider"),
        (["--provider", "tensorrt"], "no TensorrtExecutionProvider"),
        (["--provider", "tpu"], "unknown --provider"),
        (["--provider", "cpu", "--backend", "openvino"], "onnxruntime is not among"),
    ],
)
def test_an_unusable_provider_exits_2_before_any_worker(
    workspace: dict[str, str], tmp_path: Path, extra: list[str], fragment: str
) -> None:
    arguments = ["bench", workspace["fp32"], "-o", str(tmp_path / "work"), *extra]
    if "--backend" not in extra:
        arguments += ["--backend", "onnxruntime"]

    result = CliRunner().invoke(app, arguments)

    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "work").exists()
