"""The CLI contract: cheap help, one-line errors with exit 2, tracebacks only for bugs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TINY = FIXTURES / "tiny_models.py"
HEAVY_MODULES = ("torch", "onnxruntime", "openvino", "nncf", "tensorrt", "onnx", "numpy")


def run_dlopt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys, json\n"
        "from dlopt.cli import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_every_command_help_has_an_example() -> None:
    from typer.testing import CliRunner

    from dlopt.cli import app

    runner = CliRunner()
    commands = [command.name for command in app.registered_commands]
    assert "export" in commands
    for name in commands:
        result = runner.invoke(app, [str(name), "--help"])
        assert result.exit_code == 0, result.output
        assert "Examples:" in result.output and "dlopt " + str(name) in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["export", "no/such/model.py:make"], "does not exist"),
        (["export", f"{TINY}:not_a_module"], "not a torch.nn.Module"),
        (["export", f"{TINY}:dict_output_net", "-i", "x:batchx4"], "cannot read dimension"),
        (["export", f"{TINY}:dict_output_net", "-i", "x:batch=2x5"], "fails on inputs"),
        (["export", f"{TINY}:dict_output_net", "-w", "missing.pt"], "weights file missing.pt"),
    ],
)
def test_user_errors_exit_2_with_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    result = run_dlopt(*args, "-o", str(tmp_path / "out"))

    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_debug_env_adds_the_traceback() -> None:
    result = run_dlopt("export", "no/such/model.py:make", env={"DLOPT_DEBUG": "1"})

    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_weights_that_do_not_fit_exit_2(tmp_path: Path) -> None:
    import torch

    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(7, 4), "fc.bias": torch.zeros(7)}, weights)

    result = run_dlopt("export", f"{TINY}:dict_output_net", "-w", str(weights))

    assert result.returncode == 2
    assert "do not fit the model" in result.stderr and "Traceback" not in result.stderr


def test_unknown_option_is_a_usage_error() -> None:
    result = run_dlopt("export", f"{TINY}:dict_output_net", "--no-such-option")

    assert result.returncode == 2
    assert "No such option" in result.stderr
