"""No code runs from a model or data file unless the user says they trust it: a crafted file per
unpickling path, each of which creates a marker file when its payload runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import evil_files


def run_dlopt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_crafted_pt2_runs_code_in_export_only_with_trust_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = evil_files.evil_pt2(tmp_path / "evil.pt2", marker)

    refused = run_dlopt("export", str(evil), "-i", "x:2x10", "-o", "out", cwd=tmp_path)

    assert refused.returncode == 2, refused.stderr
    line = one_error_line(refused)
    assert "evil.pt2" in line and "data/sample_inputs/model.pt" in line
    assert "builtins.eval" in line and "--trust-pickle" in line
    assert not marker.exists()
    assert not (tmp_path / "out" / "model.onnx").exists()

    trusted = run_dlopt(
        "export", str(evil), "-i", "x:2x10", "-f", "onnx", "-o", "out", "--trust-pickle",
        cwd=tmp_path,
    )  # fmt: skip

    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()  # the file is live: what the default refused would have run


def test_crafted_pt2_is_refused_by_bench_before_any_worker(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = evil_files.evil_pt2(tmp_path / "evil.pt2", marker)

    refused = run_dlopt("bench", str(evil), "-b", "torch", "-o", "bench", cwd=tmp_path)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--trust-pickle" in one_error_line(refused)
    assert not marker.exists()
    assert not (tmp_path / "bench" / "jobs").exists()

    trusted = run_dlopt(
        "bench", str(evil), "-b", "torch", "-o", "bench", "--iterations", "10", "--trust-pickle",
        cwd=tmp_path,
    )  # fmt: skip

    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()  # loaded in the worker: the override reaches it


def test_pt2_graph_calling_a_python_function_is_refused(tmp_path: Path) -> None:
    evil = evil_files.evil_pt2_graph_target(tmp_path / "evil.pt2", tmp_path / "MARKER")

    refused = run_dlopt("export", str(evil), "-i", "x:2x10", "-o", "out", cwd=tmp_path)

    assert refused.returncode == 2, refused.stderr
    line = one_error_line(refused)
    assert "models/model.json" in line and "torch.serialization.os.system" in line


def test_clean_pt2_exports(tmp_path: Path) -> None:
    clean = evil_files.tiny_pt2(tmp_path / "tiny.pt2")

    result = run_dlopt(
        "export", str(clean), "-i", "x:2x10", "-f", "onnx", "-o", "out", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "model.onnx").is_file()


def test_crafted_torchscript_never_runs_its_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = evil_files.evil_torchscript(tmp_path / "evil.ts", marker)

    result = run_dlopt("export", str(evil), "-i", "x:2x10", "-o", "out", cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert "evil.ts" in one_error_line(result)
    assert not marker.exists()


def test_crafted_weights_are_refused_without_trust_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    weights = evil_files.evil_weights(tmp_path / "weights.pt", marker)
    source = f"{Path(evil_files.__file__)}:TinyLinear"

    result = run_dlopt(
        "export", source, "-w", str(weights), "-i", "x:2x10", "-o", "out", cwd=tmp_path
    )

    assert result.returncode == 2, result.stderr
    assert "--trust-pickle" in one_error_line(result)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["bench", "quantize"])
def test_object_arrays_in_npz_data_are_refused(command: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    data = evil_files.evil_npz(tmp_path / "data.npz", marker)
    model = evil_files.tiny_pt2(tmp_path / "tiny.pt2")
    exported = run_dlopt(
        "export", str(model), "-i", "x:2x10", "-f", "onnx", "-o", "fp32", cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    onnx_file = str(tmp_path / "fp32" / "model.onnx")
    args = (
        ["bench", onnx_file, "--data", str(data), "-o", "bench"]
        if command == "bench"
        else ["quantize", onnx_file, "--calibration", str(data), "-o", "q"]
    )

    result = run_dlopt(*args, cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "object array" in one_error_line(result)
    assert not marker.exists()
