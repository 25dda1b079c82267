"""The isolated bench worker: `python -m dlopt.harness.worker JOB.json`.

A job spec (JSON, `WorkerJob`) goes in; `result.json` plus one `<model id>.outputs/` folder per
model (its outputs on the job's range of the evaluation set, streamed into memory-mapped `.npy`
files: `dlopt.harness.output_store`) come out in the job's output folder. The parent
(`dlopt.harness.worker_process`) runs each job in a fresh process with a timeout, so a crash, an
out-of-memory kill or a hang only fails that job's rows.

Modes:
- `solo`: one model: load, first inference, outputs on the evaluation set (or on samples
  [eval_start, eval_stop) of it: one shard), warm-up and timed runs, memory by phase. Used when a
  backend has a single model to measure on an unsharded evaluation set.
- `outputs`: the same without the timed runs: the per-pair (per-shard) process whose peak memory
  belongs to that (model, backend) pair alone, used when several models share a backend.
- `interleaved`: several models on one backend: each is loaded and warmed up, then the timed runs
  alternate A B A B ... so that the machine's drift hits all of them alike. Its memory is not
  attributed to any pair (the `outputs` jobs measure that).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JOB_SCHEMA = "dlopt.bench.job/1"
MODES = ("solo", "outputs", "interleaved")
LATENCY_BATCHES = 8  # distinct input batches the timed runs rotate through
MIN_TIMED_RUNS = 10
RESULT_FILE = "result.json"
PARENT_FD_FLAG = "--parent-fd="
MODEL_KEY_BYTES = 32


@dataclass
class JobModel:
    id: str
    artifact: str


@dataclass
class WorkerJob:
    """Everything a worker needs; written as JSON so the job could run on another machine."""

    mode: str
    backend: str
    models: list[JobModel]
    output_dir: str
    data: str | None = None
    batch_size: int = 1
    eval_limit: int | None = None
    threads: int | None = None
    precision_hint: str | None = None
    weights: str | None = None
    iterations: int | None = None
    min_time_s: float = 2.0
    max_iterations: int | None = None
    warmup: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    memory_limit_mb: int | None = None
    provider: str | None = None
    trust_pickle: bool = False
    # Encrypted artifacts: the key arrives on stdin, never in this file or the environment.
    model_key_on_stdin: bool = False
    eval_start: int = 0  # the shard of the evaluation set: samples [eval_start, eval_stop)
    eval_stop: int | None = None  # None: to the end
    schema: str = JOB_SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerJob:
        values = dict(data)
        values["models"] = [JobModel(**model) for model in data["models"]]
        return cls(**values)


def main(argv: list[str]) -> int:
    """`JOB.json [--parent-fd=N]`: N is the read end of a pipe whose write end the parent
    holds; the worker ends itself when the parent does (`follow_parent`)."""
    for argument in argv[1:]:
        if argument.startswith(PARENT_FD_FLAG):
            follow_parent(int(argument[len(PARENT_FD_FLAG) :]))
    job = WorkerJob.from_dict(json.loads(Path(argv[0]).read_text()))
    model_key = sys.stdin.buffer.read(MODEL_KEY_BYTES) if job.model_key_on_stdin else None
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        limit_memory(job.memory_limit_mb)
        result = run_job(job, model_key)
    except Exception as error:
        from dlopt.errors import DloptError

        message = (
            error.one_line()
            if isinstance(error, DloptError)
            else f"{type(error).__name__}: {error}"
        )
        if _is_out_of_memory(error):
            limit = job.memory_limit_mb
            within = f" (the worker's memory limit is {limit} MB)" if limit else ""
            message = f"ran out of memory{within}: {message.strip().splitlines()[0][:300]}"
        result = {
            "status": "failed",
            "error": message,
            "traceback": None if isinstance(error, DloptError) else traceback.format_exc(),
        }
    _write_json(output_dir / RESULT_FILE, result)
    return 0


def follow_parent(pipe_fd: int) -> None:
    """End this worker (and its process group) as soon as the parent ends, however it ends.

    A worker runs in its own session, so neither Ctrl-C in the terminal nor a kill of the
    parent reaches it; a hanging worker would outlive dlopt and later write into a dead run's
    folder. On Linux the kernel sends SIGKILL when the parent dies (PR_SET_PDEATHSIG), even if
    this process is stuck in native code; everywhere, a thread waits for end-of-file on a pipe
    whose write end only the parent holds (the kernel closes it when the parent dies).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # from <sys/prctl.h>
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    def wait_for_parent() -> None:
        while True:
            try:
                if os.read(pipe_fd, 1) == b"":
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=wait_for_parent, name="dlopt-follow-parent", daemon=True).start()


def limit_memory(limit_mb: int | None) -> None:
    """Cap this process's address space (RLIMIT_AS) at `limit_mb`; None leaves it as it is.

    A model that allocates past the cap gets a failed allocation (MemoryError, or the
    runtime's own allocation error) in this worker instead of pushing the machine into swap or
    the OOM killer. Called in the worker process only: never in the parent or in tests.
    """
    if limit_mb is None:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = limit_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


# How runtimes word a failed allocation (torch, onnxruntime and C++ std::bad_alloc, errno 12).
_OUT_OF_MEMORY_MARKERS = ("can't allocate memory", "cannot allocate memory", "bad_alloc")


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _OUT_OF_MEMORY_MARKERS)


def run_job(job: WorkerJob, model_key: bytes | None = None) -> dict[str, Any]:
    """Run a job in this process; returns the result dict (also used by tests).

    `model_key` decrypts encrypted artifacts in memory (dlopt.backends.encrypted)."""
    import numpy as np

    from dlopt.backends import get_backend
    from dlopt.backends.base import LoadOptions
    from dlopt.harness.memory import peak_rss_bytes, rss_bytes

    if job.mode not in MODES:
        raise ValueError(f"unknown job mode {job.mode!r}")
    Path(job.output_dir).mkdir(parents=True, exist_ok=True)
    backend = get_backend(job.backend)
    started = time.perf_counter_ns()
    backend.import_runtime()
    imports_s = (time.perf_counter_ns() - started) / 1e9
    memory: dict[str, int] = {
        "rss_after_imports_bytes": rss_bytes(),
        "peak_rss_after_imports_bytes": peak_rss_bytes(),
    }
    options = LoadOptions(
        job.threads,
        job.precision_hint,
        Path(job.weights) if job.weights else None,
        job.provider,
        batch_size=job.batch_size,
        allow_pickle=job.trust_pickle,
        model_key=model_key,
    )
    models: dict[str, dict[str, Any]] = {}
    sessions = {}
    for model in job.models:
        started = time.perf_counter_ns()
        session = backend.load(model.artifact, options)
        load_s, build_s = split_load_time((time.perf_counter_ns() - started) / 1e9, session.info)
        sessions[model.id] = session
        models[model.id] = {
            "load_s": load_s,
            "build_s": build_s,
            "info": session.info,
            "inputs": [spec.to_dict() for spec in session.inputs],
            "output_names": session.output_names,
        }
    memory["rss_after_load_bytes"] = rss_bytes()
    memory["peak_rss_after_load_bytes"] = peak_rss_bytes()

    batches = {mid: _latency_batches(job, session.inputs) for mid, session in sessions.items()}
    for mid, session in sessions.items():
        started = time.perf_counter_ns()
        session.run(batches[mid][0])
        models[mid]["first_inference_ms"] = (time.perf_counter_ns() - started) / 1e6
        models[mid]["batch_size"] = int(next(iter(batches[mid][0].values())).shape[0])

    if job.mode in ("solo", "outputs"):
        ((mid, session),) = sessions.items()
        models[mid].update(_evaluate(job, mid, session, np))
    if job.mode in ("solo", "interleaved"):
        samples, warmups = _timed_runs(job, sessions, batches)
        for mid in sessions:
            models[mid]["latency_samples_ns"] = samples[mid]
            models[mid]["warmup"] = warmups[mid]
    memory["peak_rss_bytes"] = peak_rss_bytes()
    if job.mode != "interleaved":
        (mid,) = sessions
        models[mid]["memory"] = memory
    for session in sessions.values():
        session.close()
    return {"status": "ok", "error": None, "imports_s": imports_s, "models": models}


def split_load_time(total_s: float, info: dict[str, Any]) -> tuple[float, float | None]:
    """(load_s, build_s): a backend that built an engine while loading (tensorrt given an
    ONNX) records `engine_build_s` in its info; that time is reported apart from loading."""
    build_s = info.get("engine_build_s")
    if not isinstance(build_s, (int, float)):
        return total_s, None
    return max(total_s - float(build_s), 0.0), float(build_s)


def _latency_batches(job: WorkerJob, specs: list[Any]) -> list[dict[str, Any]]:
    from dlopt.data import open_data

    source = open_data(job.data, specs, batch_size=job.batch_size, seed=job.seed)
    batches = []
    for batch in source:
        batches.append(batch.inputs)
        if len(batches) == LATENCY_BATCHES:
            break
    return batches


def _evaluate(job: WorkerJob, mid: str, session: Any, np: Any) -> dict[str, Any]:
    """Outputs on the job's samples of the evaluation set, streamed with the labels into
    `<id>.outputs/` (memory-mapped .npy files): memory does not grow with the set."""
    from dlopt.data import open_data
    from dlopt.harness.output_store import OutputWriter

    source = open_data(job.data, session.inputs, job.batch_size, job.eval_limit, job.seed)
    # A first pass counts the samples (reading data, no inference): the files are sized once.
    count = sum(batch.size for batch in _shard(source, job.eval_start, job.eval_stop))
    if count == 0:
        raise ValueError(f"the evaluation set has no samples from index {job.eval_start} on")
    folder = Path(job.output_dir) / f"{mid}.outputs"
    writer = OutputWriter(folder, job.eval_start, count)
    for batch in _shard(source, job.eval_start, job.eval_stop):
        outputs = {name: np.asarray(value) for name, value in session.run(batch.inputs).items()}
        writer.append(outputs, batch.labels)
    writer.close()
    return {"outputs_part": str(folder), "samples": count, "data": source.description}


def _shard(source: Any, start: int, stop: int | None) -> Any:
    """The source's batches cut to samples [start, stop) (whole batches when the shard's
    edges are multiples of the batch size, as `plan_ranges` makes them)."""
    from dlopt.data import Batch

    offset = 0
    for batch in source:
        low, high = max(start - offset, 0), batch.size
        if stop is not None:
            high = min(high, stop - offset)
        offset += batch.size
        if low >= high:
            if stop is not None and offset >= stop:
                return
            continue
        if (low, high) != (0, batch.size):
            labels = None if batch.labels is None else batch.labels[low:high]
            batch = Batch({n: a[low:high] for n, a in batch.inputs.items()}, labels)
        yield batch
        if stop is not None and offset >= stop:
            return


def _timed_runs(
    job: WorkerJob, sessions: dict[str, Any], batches: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, list[int]], dict[str, dict[str, Any]]]:
    """Warm up each model, then time rounds in which every model runs once (A B A B ...)."""
    from dlopt.harness.latency import WarmupPolicy, warm_up

    policy = WarmupPolicy(**job.warmup)
    warmups: dict[str, dict[str, Any]] = {}
    for mid, session in sessions.items():
        runs, stable = warm_up(
            functools.partial(_time_next, session, _Rotation(batches[mid])), policy
        )
        warmups[mid] = {"runs": runs, "stable": stable}
    samples: dict[str, list[int]] = {mid: [] for mid in sessions}
    rotations = {mid: _Rotation(batches[mid]) for mid in sessions}
    deadline = time.perf_counter_ns() + int(job.min_time_s * 1e9)
    rounds = 0
    while True:
        if job.iterations is not None:
            if rounds >= job.iterations:
                break
        elif _enough(job, rounds, deadline):
            break
        for mid, session in sessions.items():
            samples[mid].append(_time_one(session, rotations[mid].next()))
        rounds += 1
    return samples, warmups


def _enough(job: WorkerJob, rounds: int, deadline_ns: int) -> bool:
    """Timed rounds stop at max_iterations, or after min_time_s (and MIN_TIMED_RUNS)."""
    if job.max_iterations is not None and rounds >= job.max_iterations:
        return True
    return rounds >= MIN_TIMED_RUNS and time.perf_counter_ns() >= deadline_ns


def _time_next(session: Any, rotation: _Rotation) -> int:
    return _time_one(session, rotation.next())


def _time_one(session: Any, feed: dict[str, Any]) -> int:
    started = time.perf_counter_ns()
    session.run(feed)
    return time.perf_counter_ns() - started


class _Rotation:
    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.index = 0

    def next(self) -> Any:
        item = self.items[self.index % len(self.items)]
        self.index += 1
        return item


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from dlopt.artifacts import atomic_write_text
    from dlopt.jsonio import dumps

    atomic_write_text(path, dumps(data))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
