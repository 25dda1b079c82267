"""Which (variant, backend) pairs a gate benches, and one bench of them all.

The pairs: every variant made, on every backend it is meant for and whose format the backend
runs, provided the FP32 reference runs there too (nothing to compare with otherwise). With the
local executor a backend this machine lacks is judged here (skipped when optional, else failed);
elsewhere each node says what it can run. The bench is one `run_bench` over every backend, so
an executor may run the backends' groups side by side, each on a node that fits its target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dlopt.gate.config import GateConfig, VariantConfig
from dlopt.gate.verdicts import GateResult, failed, skipped

if TYPE_CHECKING:
    from dlopt.harness.executors import Executor


class MadeVariant(Protocol):
    """A variant as the pipeline made it (`pipeline.VariantArtifact`)."""

    name: str
    path: Path | None


V = TypeVar("V", bound=MadeVariant)


def runnable_on(
    backend_name: str, made: Sequence[V], variants: Sequence[VariantConfig]
) -> dict[str, V]:
    """The variants (by artifact path) to bench on a backend: made, meant for it, in a format
    it runs; none when the reference is not among them (nothing to compare with)."""
    from dlopt.backends import get_backend
    from dlopt.backends.base import describe_artifact

    backend = get_backend(backend_name)
    wanted = {variant.name: variant.backends for variant in variants}
    runnable: dict[str, V] = {}
    for variant in made:
        if variant.path is None:
            continue
        restricted = wanted.get(variant.name)
        if restricted and backend_name not in restricted:
            continue
        if describe_artifact(str(variant.path)).format in backend.formats:
            runnable[str(variant.path)] = variant
    return runnable if str(made[0].path) in runnable else {}


def unavailable_here(runnable: dict[str, dict[str, V]], config: GateConfig) -> list[GateResult]:
    """Skipped (optional) or failed gates for backends this machine cannot run; their
    variants are taken out of `runnable`."""
    from dlopt.backends import get_backend

    gates: list[GateResult] = []
    for backend_name, variants in runnable.items():
        availability = get_backend(backend_name).availability()
        if not variants or availability.ok:
            continue
        reason = f"{backend_name} is unavailable here: {availability.reason}"
        for variant in variants.values():
            if backend_name in config.bench.optional_backends:
                gates.append(skipped(variant.name, backend_name, "*", f"optional; {reason}"))
            else:
                gates.append(failed(variant.name, backend_name, "*", reason))
        runnable[backend_name] = {}
    return gates


def bench_variants(
    runnable: dict[str, dict[str, V]],
    made: Sequence[V],
    config: GateConfig,
    folder: Path,
    executor: Executor,
    say: Callable[[str], None],
    model_key: bytes | None = None,
) -> dict[str, Any]:
    """One bench of every runnable (variant, backend) pair: the executor may run the backends'
    groups side by side, each on a node that fits its target. `model_key` decrypts encrypted
    artifacts (benched here only)."""
    from dlopt.harness.bench import BenchSettings, run_bench

    backends = tuple(backend for backend, variants in runnable.items() if variants)
    if not backends:
        return {"rows": []}
    say(f"benchmarking on {', '.join(backends)}")
    settings = BenchSettings(
        backends=backends,
        data=config.data.evaluation,
        reference=str(made[0].path),
        batch_size=config.bench.batch_size,
        threads=config.bench.threads,
        min_time_s=config.bench.min_time_s,
        max_iterations=config.bench.max_iterations,
        eval_limit=config.data.evaluation_limit,
        task=config.data.task,
        timeout_s=config.bench.timeout_s,
        eval_shards=config.bench.eval_shards,
        trust_pickle=config.model.trust_pickle,
    )
    models = list(dict.fromkeys(path for variants in runnable.values() for path in variants))
    wanted = {backend: list(runnable[backend]) for backend in backends}
    report = run_bench(
        models, settings, folder, say, executor, config.targets, wanted, model_key=model_key
    )
    return report.to_dict()
