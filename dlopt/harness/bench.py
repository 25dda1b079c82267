"""`run_bench`: every (model, backend) pair in its own worker process, then drift and metrics.

How memory and interleaving both stay true:
- A backend with one model gets one `solo` worker: load, first inference, outputs on the
  evaluation set, warm-up and timed runs; its peak RSS is that pair's.
- A backend with several models gets one `outputs` worker per pair (load, first inference,
  outputs, memory: the pair's own peak) and then one `interleaved` worker that loads every model
  that succeeded and alternates their timed runs A B A B ..., so that the machine's drift hits
  them alike; that worker's memory is attributed to no pair and not reported.
A worker that crashes (any signal, e.g. SIGSEGV or the OOM killer's SIGKILL), exits without a
result, or runs past the timeout becomes a failed row with the reason; the other rows go on.

Then, in this process: drift of each row's outputs against the reference's outputs on the same
inputs (the reference row on the same backend when there is one, else the first one that ran),
task metrics when the data has labels, and latency ratios from interleaved runs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.errors import ConfigError
from dlopt.harness.latency import WarmupPolicy, ratio_of_medians, summarize
from dlopt.harness.metrics import TASKS
from dlopt.harness.results import BenchReport, BenchRow
from dlopt.harness.worker import PARENT_FD_FLAG, RESULT_FILE, JobModel, WorkerJob
from dlopt.progress import step as progress_step

__all__ = ["BenchReport", "BenchRow", "BenchSettings", "run_bench"]
DEFAULT_TIMEOUT_S = 900.0
# How a worker under a memory limit can die when native code fails to allocate.
_OUT_OF_MEMORY_SIGNALS = (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)


@dataclass(frozen=True)
class BenchSettings:
    """What to measure and how; validated on creation (ConfigError names the field)."""

    backends: tuple[str, ...] = ("onnxruntime",)
    data: str | None = None
    reference: str | None = None
    batch_size: int = 1
    threads: int | None = None
    iterations: int | None = None
    min_time_s: float = 2.0
    max_iterations: int | None = None  # stops timed runs before min_time_s when reached
    eval_limit: int | None = None
    precision_hint: str | None = None
    weights: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    warmup: WarmupPolicy = field(default_factory=WarmupPolicy)
    seed: int = 0
    # Each worker's address-space cap (RLIMIT_AS, imports included); None: no cap.
    memory_limit_mb: int | None = None
    # ONNX Runtime execution provider: auto (best installed), tensorrt, cuda or cpu.
    provider: str | None = None
    # Task metrics: auto (from the labels), classification, regression or none.
    task: str = "auto"
    # Load pickles that hold more than tensors (.pt2, weights): only for trusted files.
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        positive = {
            "batch_size": self.batch_size,
            "threads": self.threads,
            "iterations": self.iterations,
            "max_iterations": self.max_iterations,
            "eval_limit": self.eval_limit,
            "memory_limit_mb": self.memory_limit_mb,
        }
        for name, value in positive.items():
            if value is not None and value < 1:
                raise ConfigError(f"{name} is {value}", f"{name} must be at least 1")
        if self.min_time_s <= 0:
            raise ConfigError(f"min_time_s is {self.min_time_s}", "give a positive time")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s is {self.timeout_s}", "give a positive timeout")
        if not self.backends:
            raise ConfigError("no backend given", "pass --backend NAME at least once")
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}", f"use one of {', '.join(TASKS)}")
        if self.provider is not None:
            from dlopt.backends.onnxruntime_backend import ORT_PROVIDER_CHOICES

            if self.provider not in ORT_PROVIDER_CHOICES:
                raise ConfigError(
                    f"unknown --provider {self.provider!r}",
                    f"use one of {', '.join(ORT_PROVIDER_CHOICES)}",
                )
            if "onnxruntime" not in self.backends:
                raise ConfigError(
                    "--provider chooses ONNX Runtime's execution provider, but onnxruntime is "
                    "not among the backends",
                    "add --backend onnxruntime, or drop --provider",
                )


def _check_data(settings: BenchSettings, inputs: Sequence[Any], say: Progress) -> None:
    """Read the evaluation data once, here, so that bad data (wrong names, shapes or dtypes,
    NaN, empty, labels of the wrong length) is a one-line DataError and exit 2, not a failed
    row per worker. Streams batch by batch, like the workers."""
    from dlopt.data import open_data

    specs = next((specs for specs in inputs if specs), None)
    if settings.data is None or specs is None:
        return
    say(f"checking the data {settings.data}")
    source = open_data(
        settings.data, specs, settings.batch_size, settings.eval_limit, settings.seed
    )
    source.count_samples()


@dataclass
class _Pair:
    id: str
    model: str
    backend: str
    row: BenchRow
    result: dict[str, Any] | None = None


Progress = Callable[[str], None]


def run_bench(
    models: Sequence[str],
    settings: BenchSettings,
    output_dir: Path,
    progress: Progress | None = None,
    model_key: bytes | None = None,
) -> BenchReport:
    """Measure every model on every backend (see the module docstring); returns the report.

    `model_key` decrypts encrypted artifacts, in memory only: it reaches each worker through
    its stdin, never a file, the environment or the report.
    Raises DloptError for bad input (unknown backend, missing model, bad settings, a missing
    or wrong key, an altered encrypted file); a pair that fails at run time is a failed row.
    """
    from dlopt.artifacts import cpu_info, ensure_writable_dir, tool_versions
    from dlopt.backends import get_backend
    from dlopt.backends.base import describe_artifact

    say = progress or (lambda message: None)
    if not models:
        raise ConfigError("no model given", "pass at least one model file")
    names = list(dict.fromkeys(models))
    if settings.reference is not None and settings.reference not in names:
        names.insert(0, settings.reference)
    artifacts = {name: describe_artifact(name) for name in names}
    if not settings.trust_pickle:  # here, so that a refused file exits 2 before any worker
        from dlopt.trust.pickle_safety import check_exported_program

        for artifact in artifacts.values():
            path = None if artifact.encrypted else artifact.path
            if artifact.format == "exported_program" and path is not None:
                check_exported_program(path.read_bytes(), str(path))
    _check_decryptable([a for a in artifacts.values() if a.encrypted], model_key, say)
    backends = {name: get_backend(name) for name in dict.fromkeys(settings.backends)}
    _check_data(settings, [artifact.inputs for artifact in artifacts.values()], say)
    ensure_writable_dir(output_dir)  # only once the input is known to be good
    pairs: list[_Pair] = []
    for backend_name, backend in backends.items():
        availability = backend.availability()
        for index, name in enumerate(names):
            artifact = artifacts[name]
            row = BenchRow(
                name,
                backend_name,
                "ok",
                is_reference=name == settings.reference,
                format=artifact.format,
                size_bytes=_size_bytes(artifact.path, settings.weights),
            )
            if not availability.ok:
                row.status, row.reason = "skipped", f"{backend_name}: {availability.reason}"
            elif artifact.format not in backend.formats:
                row.status = "skipped"
                row.reason = (
                    f"{backend_name} runs {', '.join(sorted(backend.formats))}, "
                    f"not {artifact.format}"
                )
            pairs.append(_Pair(f"{backend_name}-m{index}", name, backend_name, row))

    jobs_dir = output_dir / "jobs"
    for backend_name in backends:
        runnable = [p for p in pairs if p.backend == backend_name and p.row.status == "ok"]
        mode = "solo" if len(runnable) == 1 else "outputs"
        with progress_step(f"outputs and memory on {backend_name}", len(runnable)) as advance:
            for pair in runnable:
                say(f"{pair.model} on {backend_name}")
                job = _job(settings, mode, backend_name, [pair], jobs_dir / pair.id, model_key)
                pair.result = _run_worker(job, settings.timeout_s, pair.row, model_key)
                if pair.result is not None:
                    _fill_row(pair.row, pair.result["models"][pair.id], pair.result)
                advance()
        done = [p for p in runnable if p.row.status == "ok"]
        if mode == "outputs" and done:  # timed runs of the survivors, interleaved
            say(f"interleaved timed runs on {backend_name}")
            folder = jobs_dir / f"{backend_name}-ab"
            job = _job(settings, "interleaved", backend_name, done, folder, model_key)
            holder = BenchRow("", backend_name, "ok")
            result = _run_worker(job, settings.timeout_s, holder, model_key)
            for pair in done:
                if result is None:
                    pair.row.warnings.append(f"interleaved timed runs failed: {holder.reason}")
                    continue
                _fill_latency(pair.row, result["models"][pair.id], "interleaved")
            if result is not None:
                _fill_ratios(done, result, settings.reference)
    _compare_outputs(pairs, settings.reference, settings.task)
    for pair in pairs:
        _runtime_warnings(pair.row, artifacts[pair.model].manifest)
    return BenchReport(
        rows=[pair.row for pair in pairs],
        settings=_settings_dict(settings, names),
        environment={"cpu": cpu_info(), "tool_versions": tool_versions()},
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


# The default accuracy budget of `dlopt quantize` (optimize/quantize/budget.py), repeated here
# (harness cannot import optimize): a variant below it on a runtime is flagged on that runtime.
DEFAULT_COSINE_FLOOR = 0.99
# Starts the warnings about the runtime a variant runs on (the gate's reports show these).
RUNTIME_WARNING = "runtime: "


def _runtime_warnings(row: BenchRow, manifest: dict[str, Any] | None) -> None:
    """Flag a variant benched on a runtime it was not made for, and one whose outputs on this
    runtime drift below the default budget: an ORT INT8 GPT-2 kept cosine 0.99 on ONNX
    Runtime and fell to 0.80 on OpenVINO, and dynamic-INT8 ONNX ran 0.79-0.89x FP32 there."""
    if row.status != "ok" or row.is_reference:
        return
    recipe = (manifest or {}).get("recipe") or {}
    runtime = recipe.get("runtime")
    if isinstance(runtime, str) and runtime != row.backend:
        row.warnings.append(
            f"{RUNTIME_WARNING}made for {runtime}, benched on {row.backend}: its speed and "
            f"accuracy were checked on {runtime} only"
        )
    cosines = [
        entry["cosine"]
        for entry in (row.drift or {}).values()
        if isinstance(entry.get("cosine"), (int, float))
    ]
    if cosines and min(cosines) < DEFAULT_COSINE_FLOOR:
        row.warnings.append(
            f"{RUNTIME_WARNING}cosine {min(cosines):.4f} against the reference on "
            f"{row.backend} is below the default budget ({DEFAULT_COSINE_FLOOR})"
        )


def _check_decryptable(encrypted: Sequence[Any], key: bytes | None, say: Progress) -> None:
    """Here, before any worker: a missing or wrong key, or a truncated or altered file, is a
    one-line error (exit 2). The plaintext is dropped at once."""
    from dlopt.backends.base import LoadOptions
    from dlopt.backends.encrypted import decrypted_members

    for artifact in encrypted:
        say(f"checking {artifact.text} decrypts")
        decrypted_members(artifact, LoadOptions(model_key=key))


def _size_bytes(path: Path | None, weights: str | None) -> int | None:
    from dlopt.artifacts import artifact_size_bytes

    if path is not None and path.is_file() and path.suffix != ".py":
        return artifact_size_bytes(path)
    if weights is not None and Path(weights).is_file():
        return Path(weights).stat().st_size
    return None


def _settings_dict(settings: BenchSettings, models: list[str]) -> dict[str, Any]:
    data = asdict(settings)
    data["backends"] = list(settings.backends)
    data["models"] = models
    return data


def _job(
    settings: BenchSettings,
    mode: str,
    backend: str,
    pairs: list[_Pair],
    directory: Path,
    model_key: bytes | None = None,
) -> WorkerJob:
    return WorkerJob(
        mode=mode,
        backend=backend,
        models=[JobModel(pair.id, pair.model) for pair in pairs],
        output_dir=str(directory),
        data=settings.data,
        batch_size=settings.batch_size,
        eval_limit=settings.eval_limit,
        threads=settings.threads,
        precision_hint=settings.precision_hint,
        weights=settings.weights,
        iterations=settings.iterations,
        min_time_s=settings.min_time_s,
        max_iterations=settings.max_iterations,
        warmup=asdict(settings.warmup),
        seed=settings.seed,
        memory_limit_mb=settings.memory_limit_mb,
        provider=settings.provider,
        trust_pickle=settings.trust_pickle,
        model_key_on_stdin=model_key is not None,
    )


def _run_worker(
    job: WorkerJob, timeout_s: float, row: BenchRow, model_key: bytes | None = None
) -> dict[str, Any] | None:
    """Run a job in a fresh process; on failure mark `row` failed and return None."""
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
                # The model key travels over a pipe: never in the job file or the arguments.
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
                row.status, row.reason = "failed", f"timed out after {timeout_s:g} s (killed)"
                return None
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
        row.status, row.reason = "failed", f"worker crashed: killed by {name}{hint}"
        return None
    result_path = directory / RESULT_FILE
    if returncode != 0 or not result_path.is_file():
        tail = _tail(log_path)
        row.status = "failed"
        row.reason = f"worker exited with code {returncode} without a result: {tail}"
        return None
    result: dict[str, Any] = json.loads(result_path.read_text())
    if result.get("status") != "ok":
        row.status, row.reason = "failed", str(result.get("error"))
        return None
    return result


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


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


def _fill_row(row: BenchRow, measured: dict[str, Any], result: dict[str, Any]) -> None:
    row.imports_s = result.get("imports_s")
    row.load_s = measured.get("load_s")
    row.build_s = measured.get("build_s")
    row.first_inference_ms = measured.get("first_inference_ms")
    row.memory = measured.get("memory")
    row.samples = measured.get("samples")
    row.info = measured.get("info", {})
    row.outputs_file = measured.get("outputs_file")
    if "latency_samples_ns" in measured:
        _fill_latency(row, measured, "solo")


def _fill_latency(row: BenchRow, measured: dict[str, Any], mode: str) -> None:
    samples = measured["latency_samples_ns"]
    stats = summarize(samples, int(measured["batch_size"]))
    row.latency = {**stats.to_dict(), "mode": mode, "warmup": measured.get("warmup")}
    row.latency["samples_ns"] = list(samples)
    row.warnings.extend(stats.warnings)
    if measured.get("warmup") and not measured["warmup"].get("stable"):
        row.warnings.append("warm-up hit its cap before timings were stable")


def _fill_ratios(done: list[_Pair], result: dict[str, Any], reference: str | None) -> None:
    reference_pair = next((p for p in done if p.model == reference), None)
    if reference_pair is None:
        return
    reference_samples = result["models"][reference_pair.id]["latency_samples_ns"]
    for pair in done:
        ratio = ratio_of_medians(result["models"][pair.id]["latency_samples_ns"], reference_samples)
        pair.row.latency_ratio_to_reference = ratio.to_dict()


def _compare_outputs(pairs: list[_Pair], reference: str | None, task: str) -> None:
    from dlopt.harness.compare import compare_row

    loaded = {id(p): _load_outputs(p.row.outputs_file) for p in pairs if p.row.status == "ok"}
    reference_pairs = [p for p in pairs if p.model == reference and p.row.status == "ok"]
    for pair in pairs:
        outputs = loaded.get(id(pair))
        if pair.row.status != "ok" or outputs is None:
            continue
        same_backend = [p for p in reference_pairs if p.backend == pair.backend]
        candidates = same_backend or reference_pairs
        chosen = candidates[0] if candidates else None
        reference_outputs = loaded.get(id(chosen)) if chosen is not None else None
        compare_row(
            pair.row,
            outputs,
            reference_outputs,
            None if chosen is None else f"{chosen.model} on {chosen.backend}",
            task,
        )


def _load_outputs(path: str | None) -> dict[str, np.ndarray] | None:
    if path is None or not Path(path).is_file():
        return None
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}
