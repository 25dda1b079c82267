"""No command leaves anything outside its output folder: each one runs from an empty working
directory (outputs elsewhere) and the directory stays empty.

The model for quantize is built so that ONNX Runtime's symbolic shape inference fails on it
(positions sliced to the sequence length, as in BERT), which is when ORT saves
`sym_shape_infer_temp.onnx` and uuid-named `.data` files into the current directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from tests.integration.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
SLICED = f"{FIXTURES / 'quantize_models.py'}:sliced_position_net"
SLICED_INPUTS = ["--input", "input_ids:batch=2xseq=8:int64:0..49"]
PRUNE_NET = f"{FIXTURES / 'prune_models.py'}:tiny_res_concat_net"
QUANTIZE_CASES = [
    ("onnxruntime", "static"),
    ("onnxruntime", "dynamic"),
    ("onnxruntime", "fp16"),
    ("openvino", "static"),
    ("openvino", "fp16"),
    ("openvino", "bf16"),
    ("tensorrt", "static"),
    ("tensorrt", "fp16"),
]


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, which each test checks is still empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture(scope="module")
def sliced_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sliced_fp32")
    result = CliRunner().invoke(
        app, ["export", SLICED, *SLICED_INPUTS, "-f", "onnx", "-o", str(folder)]
    )
    assert result.exit_code == 0, result.output
    return folder / "model.onnx"


def run(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.stdout}{result.stderr}"


def test_export_leaves_the_working_directory_empty(empty_cwd: Path, tmp_path: Path) -> None:
    run("export", SLICED, *SLICED_INPUTS, "-o", str(tmp_path / "export"))

    assert {"model.onnx", "model.ts"} <= {p.name for p in (tmp_path / "export").iterdir()}
    assert sorted(p.name for p in empty_cwd.iterdir()) == []


@pytest.mark.parametrize(("target", "mode"), QUANTIZE_CASES)
def test_quantize_leaves_the_working_directory_empty(
    empty_cwd: Path, sliced_onnx: Path, tmp_path: Path, target: str, mode: str
) -> None:
    calibration = ["--calibration", "synthetic"] if mode == "static" else []
    # The speed check (benchmark workers inherit the working directory) once, with ORT static.
    speed = [] if (target, mode) == ("onnxruntime", "static") else ["--no-speed-check"]

    run(
        "quantize", str(sliced_onnx), "--target", target, "--mode", mode, *calibration,
        "-o", str(tmp_path / "q"), *speed,
    )  # fmt: skip

    manifest = (tmp_path / "q").glob("model.*.dlopt.json")
    assert next(manifest).is_file()
    assert sorted(p.name for p in empty_cwd.iterdir()) == []


def test_quantize_torch_target_leaves_the_working_directory_empty(
    empty_cwd: Path, tmp_path: Path
) -> None:
    run(
        "quantize", SLICED, *SLICED_INPUTS, "--target", "torch", "--mode", "dynamic",
        "--max-drift", "none", "-o", str(tmp_path / "q"), "--no-speed-check",
    )  # fmt: skip


def test_prune_build_bench_gate_and_report_leave_the_working_directory_empty(
    empty_cwd: Path, sliced_onnx: Path, tmp_path: Path
) -> None:
    run("prune", PRUNE_NET, "--amount", "0.5", "-o", str(tmp_path / "pruned"))
    run("build", str(sliced_onnx), "--backend", "openvino", "-o", str(tmp_path / "ir"))
    run(
        "bench", str(sliced_onnx), str(tmp_path / "ir" / "model.xml"), "--backend", "onnxruntime",
        "--backend", "openvino", "--iterations", "5", "--json", str(tmp_path / "bench.json"),
        "-o", str(tmp_path / "bench"),
    )  # fmt: skip
    config = tmp_path / "config" / "dlopt.toml"
    config.parent.mkdir()
    config.write_text(
        f'[model]\nsource = "{SLICED}"\ninputs = ["input_ids:batch=2xseq=8:int64:0..49"]\n'
        "[[variants]]\nname = 'int8'\nquantize = { mode = 'dynamic' }\n"
        "[bench]\nbackends = ['onnxruntime']\nmin_time_s = 0.2\n"
    )
    reports = tmp_path / "reports"
    result = CliRunner().invoke(app, ["gate", str(config), "-o", str(reports)])
    assert result.exit_code in (0, 1), result.stdout + result.stderr  # verdicts are not the point
    run("report", str(reports / "report.json"), "--html", str(tmp_path / "again.html"))
