"""tests/gpu/conftest.py skips GPU tests on machines without a GPU, and only those: its hook
sees every test of the session, so a checkout whose path contains "gpu" must not lose the
rest of the suite. Checked with a real pytest run on a copy of the conftest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

GPU_CONFTEST = Path(__file__).resolve().parents[1] / "gpu" / "conftest.py"


def test_a_checkout_under_a_gpu_folder_still_runs_its_cpu_tests(tmp_path: Path) -> None:
    project = tmp_path / "gpu" / "gpu-runner" / "project"
    (project / "tests" / "gpu").mkdir(parents=True)
    (project / "tests" / "unit").mkdir()
    shutil.copy(GPU_CONFTEST, project / "tests" / "gpu" / "conftest.py")
    (project / "tests" / "unit" / "test_cpu.py").write_text("def test_cpu():\n    assert True\n")
    (project / "tests" / "gpu" / "test_cuda.py").write_text("def test_cuda():\n    assert True\n")
    (project / "pytest.ini").write_text("[pytest]\n")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(project / "tests"),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert "PASSED tests/unit/test_cpu.py::test_cpu" in result.stdout, result.stdout
    if shutil.which("nvidia-smi") is None:
        assert "SKIPPED [1] tests/gpu/test_cuda.py" in result.stdout, result.stdout
