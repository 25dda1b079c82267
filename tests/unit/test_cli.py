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
HEAVY_MODULES = (
    "torch",
    "onnxruntime",
    "openvino",
    "nncf",
    "tensorrt",
    "onnx",
    "numpy",
    "ray",
    "mlflow",
)


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
        (["export", f"{TINY}:noisy_not_a_module"], "not a torch.nn.Module"),  # no warning lines
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


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bench"], "Missing argument"),
        (["bench", "--batch-size", "x", "m.onnx"], "'--batch-size'"),
        (["no-such-command"], "No such command"),
        (["quantize", "m.onnx", "--target", "tpu"], "'tpu' is not one of 'onnxruntime'"),
    ],
)
def test_a_usage_error_is_one_line_exit_2(args: list[str], fragment: str) -> None:
    result = run_dlopt(*args)

    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0] and "--help" in lines[0]


def test_help_texts_keep_bracketed_words() -> None:
    import tomllib
    from typer.testing import CliRunner

    from dlopt.cli import app

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runner = CliRunner()
    mentioned = 0
    for command in app.registered_commands:
        name = str(command.name)
        source = (root / "dlopt" / "commands" / f"{name}.py").read_text()
        output = runner.invoke(app, [name, "--help"], env={"COLUMNS": "400"}).output
        for extra in extras:
            if f"dlopt[{extra}]" in source:
                mentioned += 1
                assert f"dlopt[{extra}]" in output, (name, extra)
    assert mentioned >= 1  # build's help names dlopt[tensorrt]
    export_help = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "400"}).output
    assert "NAME:DIMS[:DTYPE[:LOW..HIGH]]" in export_help


def test_every_command_follows_the_error_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlopt backends` too: a user error is one line and exit 2, Ctrl-C exit 130, a bug exit 4
    with its traceback."""
    from typer.testing import CliRunner

    import dlopt.backends
    from dlopt.cli import app
    from dlopt.errors import BackendError

    runner = CliRunner()
    outcomes = {}
    for raised in (BackendError("backend x is broken", "fix it"), KeyboardInterrupt(), KeyError(1)):

        def get_backend(name: str, error: BaseException = raised) -> None:
            raise error

        monkeypatch.setattr(dlopt.backends, "get_backend", get_backend)
        result = runner.invoke(app, ["backends"])
        outcomes[type(raised).__name__] = (result.exit_code, result.stderr)

    code, stderr = outcomes["BackendError"]
    assert code == 2 and stderr.startswith("error: backend x is broken. Fix it.")
    assert len(stderr.strip().splitlines()) == 1
    assert outcomes["KeyboardInterrupt"] == (130, "interrupted\n")
    code, stderr = outcomes["KeyError"]
    assert code == 4 and "Traceback" in stderr and "internal error" in stderr


def test_warnings_are_shown_after_success_and_dropped_before_a_user_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import warnings

    import typer

    from dlopt.commands._common import report_errors
    from dlopt.errors import DataError

    @report_errors
    def succeeds() -> str:
        warnings.warn("worth knowing", UserWarning, stacklevel=1)
        print("output")
        return "done"

    @report_errors
    def fails() -> None:
        warnings.warn("noise", UserWarning, stacklevel=1)
        raise DataError("data source x is empty", "give data")

    assert succeeds() == "done"
    captured = capsys.readouterr()
    assert captured.out == "output\n" and "worth knowing" in captured.err
    with pytest.raises(typer.Exit) as exit_info:
        fails()
    assert exit_info.value.exit_code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: data source x is empty. Give data. (set DLOPT_DEBUG=1 for the traceback)"
    ]


def test_readme_documents_every_exit_code() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()

    for code in (0, 1, 2, 3, 4, 130):
        assert f"\n| {code} |" in readme, code
