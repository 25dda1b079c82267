"""Run one bench job (`dlopt.harness.worker`) in a fresh process, with a timeout.

A worker that crashes (any signal, e.g. SIGSEGV or the OOM killer's SIGKILL), exits without a
result, or runs past the timeout gives a reason instead of a result; the caller turns it into a
failed row and goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from dlopt.harness.worker import PARENT_FD_FLAG, RESULT_FILE, WorkerJob

# How a worker under a memory limit can die when native code fails to allocate.
_OUT_OF_MEMORY_SIGNALS = (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)


def run_worker(
    job: WorkerJob, timeout_s: float, model_key: bytes | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(the worker's result, None), or (None, why it failed). `model_key` (encrypted
    artifacts) travels over the worker's stdin: never in the job file or its arguments."""
    job.model_key_on_stdin = model_key is not None
    directory = Path(job.output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    job_file = directory / "job.json"
    job_file.write_text(job.to_json())
    (directory / RESULT_FILE).unlink(missing_ok=True)
    log_path = directory / "worker.log"
    # The worker watches the read end: when this process ends, however it ends, the kernel
    # closes the write end and the worker ends itself (worker.follow_parent).
    parent_read, parent_write = os.pipe()
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dlopt.harness.worker",
                    str(job_file),
                    f"{PARENT_FD_FLAG}{parent_read}",
                ],
                stdin=subprocess.PIPE if model_key is not None else None,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so a timeout kills the worker's children too
                pass_fds=(parent_read,),
            )
            os.close(parent_read)
            parent_read = -1
            if model_key is not None and process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.write(model_key)
                process.stdin.close()
            try:
                returncode = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                return None, f"timed out after {timeout_s:g} s (killed)"
            except BaseException:  # Ctrl-C or a bug here: the worker goes with us
                _kill_group(process)
                raise
    finally:
        for fd in (parent_read, parent_write):
            if fd >= 0:
                os.close(fd)
    if returncode < 0:
        name = _signal_name(-returncode)
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        if job.memory_limit_mb is not None and -returncode in _OUT_OF_MEMORY_SIGNALS:
            hint = f" (out of memory? the worker's memory limit is {job.memory_limit_mb} MB)"
        return None, f"worker crashed: killed by {name}{hint}"
    result_path = directory / RESULT_FILE
    if returncode != 0 or not result_path.is_file():
        tail = _tail(log_path)
        return None, f"worker exited with code {returncode} without a result: {tail}"
    result: dict[str, Any] = json.loads(result_path.read_text())
    if result.get("status") != "ok":
        return None, str(result.get("error"))
    return result, None


# How long to wait for a SIGKILLed worker to be reaped. Never without a limit: a Ctrl-C that
# lands inside Popen.wait(timeout)'s poll loop can leave Popen's internal waitpid lock held
# (CPython acquires it before its try/finally), and an untimed wait() then blocks forever; a
# worker in uninterruptible sleep (paging in from a busy disk) also dies only later.
_REAP_TIMEOUT_S = 10.0


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_REAP_TIMEOUT_S)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"
