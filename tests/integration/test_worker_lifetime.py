"""Bench workers end with dlopt, whatever ends it: a hanging worker runs in its own session
(so that a timeout can kill its whole group), so without care it would outlive a killed
`dlopt bench` or `dlopt gate` and later write into the dead run's folder."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bench_models.py"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped
    except psutil.NoSuchProcess:
        return True


def _command(process: psutil.Process) -> list[str]:
    """Its command line; empty for a short-lived child that ended meanwhile (`uname`...)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _state(process: psutil.Process) -> str:
    try:
        return f"{process.status()} {' '.join(process.cmdline()[:4])}"
    except psutil.Error as error:
        return type(error).__name__


def _wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_hanging_worker_ends_when_dlopt_is_killed(tmp_path: Path, kill: signal.Signals) -> None:
    run = tmp_path / "run"
    command = ["bench", f"{FIXTURES}:hanging_net", "-b", "torch", "--timeout", "600"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "dlopt", *command, "-o", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a job a non-interactive shell starts in the background (`cmd &`,
        # as some CI runners do) inherits SIGINT ignored, and Python then keeps ignoring it.
        preexec_fn=_default_sigint,
    )
    workers: list[psutil.Process] = []

    def worker_started() -> bool:
        workers[:] = [
            child
            for child in psutil.Process(parent.pid).children(recursive=True)
            if "dlopt.harness.worker" in " ".join(_command(child))
        ]
        return bool(workers) and (run / "jobs").is_dir()

    try:
        assert _wait_for(worker_started, 120), "no worker started"
        time.sleep(2)  # let it import torch and reach the hanging forward()
        (worker,) = workers
        assert worker.status() != psutil.STATUS_ZOMBIE

        parent.send_signal(kill)
        try:
            _, stderr = parent.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # say what each process was doing
            states = {p.pid: _state(p) for p in [psutil.Process(parent.pid), *workers]}
            pytest.fail(f"dlopt did not end within 60 s of {kill.name}; states: {states}")

        # (A SIGKILLed process paging in from a busy disk dies when its read completes.)
        assert _wait_for(lambda: _gone(worker.pid), 60), "the worker outlived dlopt"
        if kill == signal.SIGINT:
            assert parent.returncode == 130
            assert stderr.strip().splitlines()[-1] == "interrupted"
        else:
            assert parent.returncode == -signal.SIGKILL
        assert not list(run.rglob("result.json"))
    finally:
        parent.kill()
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.kill()
