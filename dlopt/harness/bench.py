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

Where: the jobs of one backend form a group (`dlopt.harness.executors`), run here by default or
as one Ray task on a node that has the group's target resources; each row names the node and its
hardware. With `eval_shards` > 1 the evaluation set is split into index ranges, one `outputs`
worker per (pair, range), and the ranges' statistics are merged exactly.

Then, in this process: drift of each row's outputs against the reference's outputs on the same
inputs (the reference row on the same backend when there is one, else the first one that ran),
task metrics when the data has labels (both read from disk a block at a time), and latency
ratios from interleaved runs.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import ConfigError
from dlopt.harness.latency import WarmupPolicy, ratio_of_medians, summarize
from dlopt.harness.metrics import TASKS
from dlopt.harness.results import BenchReport, BenchRow

if TYPE_CHECKING:
    from dlopt.harness.executors import Executor
    from dlopt.harness.executors.group import GroupJob
    from dlopt.harness.executors.targets import Target

__all__ = ["BenchReport", "BenchRow", "BenchSettings", "run_bench"]
DEFAULT_TIMEOUT_S = 900.0


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
    # The evaluation set in this many index ranges, one worker process each; stats merged.
    eval_shards: int = 1

    def __post_init__(self) -> None:
        positive = {
            "batch_size": self.batch_size,
            "threads": self.threads,
            "iterations": self.iterations,
            "max_iterations": self.max_iterations,
            "eval_limit": self.eval_limit,
            "memory_limit_mb": self.memory_limit_mb,
            "eval_shards": self.eval_shards,
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


def _check_data(
    settings: BenchSettings, inputs: Sequence[Any], say: Progress
) -> tuple[int | None, int]:
    """Read the evaluation data once, here, so that bad data (wrong names, shapes or dtypes,
    NaN, empty, labels of the wrong length) is a one-line DataError and exit 2, not a failed
    row per worker. Streams batch by batch, like the workers. Returns the samples and the
    effective batch size (None samples when no model names its inputs)."""
    from dlopt.data import open_data

    specs = next((specs for specs in inputs if specs), None)
    if specs is None:
        return None, settings.batch_size
    if settings.data is not None:
        say(f"checking the data {settings.data}")
    source = open_data(
        settings.data, specs, settings.batch_size, settings.eval_limit, settings.seed
    )
    return source.count_samples(), source.batch_size


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
    executor: Executor | None = None,
    targets: Sequence[Target] = (),
    pairs_wanted: Mapping[str, Sequence[str]] | None = None,
    model_key: bytes | None = None,
) -> BenchReport:
    """Measure every model on every backend (see the module docstring); returns the report.

    `executor` runs the groups of jobs (default: here); `targets` say which kind of node each
    backend needs; `pairs_wanted` (backend -> models), when given, limits the pairs measured.
    `model_key` decrypts encrypted artifacts, in memory only: it reaches each worker through
    its stdin, never a file, the environment or the report (so never another machine either:
    encrypted artifacts are benched by the local executor).
    Raises DloptError for bad input (unknown backend, missing model, bad settings, a missing
    or wrong key, an altered encrypted file); a pair that fails at run time is a failed row,
    not an exception.
    """
    from dlopt.artifacts import cpu_info, ensure_writable_dir, tool_versions
    from dlopt.backends import get_backend
    from dlopt.backends.base import describe_artifact
    from dlopt.harness.evaluation_stats import plan_ranges
    from dlopt.harness.executors.local import LocalExecutor
    from dlopt.harness.executors.targets import target_for

    say = progress or (lambda message: None)
    if model_key is not None and executor is not None and executor.name != "local":
        raise ConfigError(
            f"encrypted artifacts are benched here only: the decryption key never leaves this "
            f"machine, so --executor {executor.name} cannot run them",
            "use --executor local (the default) with --key-file",
        )
    executor = executor or LocalExecutor()
    if model_key is not None:
        executor = LocalExecutor(model_key)
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
    count, batch_size = _check_data(
        settings, [artifact.inputs for artifact in artifacts.values()], say
    )
    ensure_writable_dir(output_dir)  # only once the input is known to be good
    pairs: list[_Pair] = []
    for backend_name, backend in backends.items():
        target = target_for(backend_name, targets)
        for index, name in enumerate(names):
            if pairs_wanted is not None and name not in pairs_wanted.get(backend_name, ()):
                continue
            artifact = artifacts[name]
            row = BenchRow(
                name,
                backend_name,
                "ok",
                is_reference=name == settings.reference,
                format=artifact.format,
                size_bytes=_size_bytes(artifact.path, settings.weights),
                target=target.name,
            )
            if artifact.format not in backend.formats:
                row.status = "skipped"
                row.reason = (
                    f"{backend_name} runs {', '.join(sorted(backend.formats))}, "
                    f"not {artifact.format}"
                )
            pairs.append(_Pair(f"{backend_name}-m{index}", name, backend_name, row))
    ranges: list[tuple[int, int | None]] = (
        list(plan_ranges(count, settings.eval_shards, batch_size)) if count else [(0, None)]
    )
    groups = []
    for backend_name in backends:
        runnable = [p for p in pairs if p.backend == backend_name and p.row.status == "ok"]
        if runnable:
            groups.append(_group(settings, backend_name, runnable, ranges, targets))
    jobs_dir = output_dir / "jobs"
    results = executor.run(groups, jobs_dir, say)
    for group, result in zip(groups, results, strict=True):
        _fill_group(group, result, pairs, jobs_dir, settings.reference)
    _compare_outputs(pairs, settings.reference, settings.task)
    for pair in pairs:
        _runtime_warnings(pair.row, artifacts[pair.model].manifest)
    return BenchReport(
        rows=[pair.row for pair in pairs],
        settings=_settings_dict(settings, names),
        environment={
            "cpu": cpu_info(),
            "tool_versions": tool_versions(),
            "executor": executor.describe(),
        },
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


def _group(
    settings: BenchSettings,
    backend: str,
    pairs: list[_Pair],
    ranges: list[tuple[int, int | None]],
    targets: Sequence[Target],
) -> GroupJob:
    from dlopt.harness.executors.group import GroupJob
    from dlopt.harness.executors.targets import target_for
    from dlopt.harness.worker import JobModel

    worker = {
        "data": settings.data,
        "batch_size": settings.batch_size,
        "eval_limit": settings.eval_limit,
        "threads": settings.threads,
        "precision_hint": settings.precision_hint,
        "weights": settings.weights,
        "iterations": settings.iterations,
        "min_time_s": settings.min_time_s,
        "max_iterations": settings.max_iterations,
        "warmup": asdict(settings.warmup),
        "seed": settings.seed,
        "memory_limit_mb": settings.memory_limit_mb,
        "provider": settings.provider,
        "trust_pickle": settings.trust_pickle,
    }
    return GroupJob(
        id=backend,
        backend=backend,
        target=target_for(backend, targets),
        models=[JobModel(pair.id, pair.model) for pair in pairs],
        worker=worker,
        ranges=ranges,
        timeout_s=settings.timeout_s,
    )


def _fill_group(
    group: GroupJob,
    result: dict[str, Any],
    pairs: list[_Pair],
    folder: Path,
    reference: str | None,
) -> None:
    """The rows of one group from its result (which may come from another machine)."""
    from dlopt.harness.output_store import INDEX_SUFFIX, write_index

    members = [pair for pair in pairs if pair.id in {model.id for model in group.models}]
    for pair in members:
        pair.row.node = result.get("node")
        if result.get("unavailable"):
            pair.row.status = "skipped"
            pair.row.reason = f"{group.backend}: {result['unavailable']}"
        elif result.get("failed"):
            pair.row.status, pair.row.reason = "failed", str(result["failed"])
        else:
            outcome = result["pairs"][pair.id]
            if outcome["status"] != "ok":
                pair.row.status, pair.row.reason = "failed", outcome["reason"]
                continue
            measured = outcome["result"]
            _fill_row(pair.row, measured["models"][pair.id], measured)
            index = folder / f"{pair.id}{INDEX_SUFFIX}"
            pair.row.outputs_file = str(
                write_index(index, [folder / part for part in outcome["parts"]])
            )
    interleaved = result.get("interleaved")
    done = [pair for pair in members if pair.row.status == "ok"]
    if not interleaved or not done:
        return
    timed = interleaved.get("result")
    for pair in done:
        if timed is None:
            pair.row.warnings.append(f"interleaved timed runs failed: {interleaved['reason']}")
            continue
        _fill_latency(pair.row, timed["models"][pair.id], "interleaved")
    if timed is not None:
        _fill_ratios(done, timed, reference)


def _fill_row(row: BenchRow, measured: dict[str, Any], result: dict[str, Any]) -> None:
    row.imports_s = result.get("imports_s")
    row.load_s = measured.get("load_s")
    row.build_s = measured.get("build_s")
    row.first_inference_ms = measured.get("first_inference_ms")
    row.memory = measured.get("memory")
    row.samples = measured.get("samples")
    row.info = measured.get("info", {})
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
    from dlopt.harness.output_store import StoredOutputs, open_outputs

    stored: dict[int, StoredOutputs] = {}
    for pair in pairs:
        if pair.row.status == "ok" and pair.row.outputs_file is not None:
            stored[id(pair)] = open_outputs(pair.row.outputs_file)
    reference_pairs = [p for p in pairs if p.model == reference and id(p) in stored]
    for pair in pairs:
        outputs = stored.get(id(pair))
        if outputs is None:
            continue
        same_backend = [p for p in reference_pairs if p.backend == pair.backend]
        candidates = same_backend or reference_pairs
        chosen = candidates[0] if candidates else None
        compare_row(
            pair.row,
            outputs,
            stored[id(chosen)] if chosen is not None else None,
            None if chosen is None else f"{chosen.model} on {chosen.backend}",
            task,
        )
