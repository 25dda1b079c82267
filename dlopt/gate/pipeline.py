"""`run_gate`: the whole flow from one config (README, `dlopt gate`).

export the FP32 reference -> make each variant -> bench every (variant, backend) pair on the
evaluation data, interleaved with the reference -> judge each against its thresholds -> report.

Fail closed: a variant whose recipe fails, a pair that crashes or times out, a backend that is
unavailable here (unless the config marks it optional) each fail their gates; the run goes on
and reports. Only bad input (config, model source, data) stops it early, with exit 2.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt import __version__
from dlopt.artifacts import (
    cpu_info,
    ensure_writable_dir,
    read_manifest,
    sha256_file,
    tool_versions,
)
from dlopt.errors import BackendError, ConfigError, DloptError, ExitCode
from dlopt.gate.attestation import attest_gate
from dlopt.gate.config import REFERENCE_VARIANT, GateConfig, VariantConfig
from dlopt.gate.judge import (
    MB,
    judge_against_baseline,
    judge_row,
    paired_accuracy_drop_of,
    speedup_of,
)
from dlopt.gate.verdicts import GateResult, Verdict, exit_code, failed, overall_verdict, skipped
from dlopt.harness.bench import RUNTIME_WARNING
from dlopt.jsonio import json_safe
from dlopt.progress import step as progress_step
from dlopt.trust.metadata_strip import debug_metadata_kept
from dlopt.trust.provenance import portable, resolve_recorded

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from dlopt.gate.shards import Shard
    from dlopt.harness.executors import Executor

REPORT_SCHEMA_VERSION = 1
REFERENCE = REFERENCE_VARIANT
Progress = Callable[[str], None]


@dataclass
class VariantArtifact:
    """A variant made (or not) by its recipe."""

    name: str
    kind: str
    path: Path | None
    error: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False  # its engine's backend is optional and unavailable here


@dataclass
class GateOutcome:
    report: dict[str, Any]
    verdict: Verdict
    exit_code: ExitCode
    report_paths: dict[str, Path]
    warnings: list[str] = field(default_factory=list)


def run_gate(
    config: GateConfig,
    output_dir: Path,
    only: Sequence[str] = (),
    baseline: Path | None = None,
    progress: Progress | None = None,
    signing_key: Ed25519PrivateKey | None = None,
    model_key: bytes | None = None,
    executor: Executor | None = None,
    shard: Shard | None = None,
    mlflow_uri: str | None = None,
) -> GateOutcome:
    """Run the flow and write the reports and the attestation; raises DloptError only for bad
    input.

    `signing_key` (an Ed25519 private key) signs the attestation; with `model_key` the
    artifacts are encrypted at rest before they are benched (here: the key never leaves this
    machine). `executor` runs the bench jobs (default: here, one after another); `shard` keeps
    its share of the variants (`gate.shards`); `mlflow_uri` logs the run to MLflow
    (`report.tracking`)."""
    from dlopt.gate.bench_plan import bench_variants, runnable_on, unavailable_here
    from dlopt.gate.recipes import check_recipe
    from dlopt.harness.executors.local import LocalExecutor
    from dlopt.report.write import append_step_summary, read_report, write_reports

    say = progress or (lambda message: None)
    # Absolute inside, so that every path written is made relative to the report folder.
    output_dir = output_dir.resolve()
    executor = executor or LocalExecutor()
    variants = _selected(config.variants, only)
    if shard is not None:
        variants = shard.pick(variants)
    for variant in variants:
        check_recipe(variant, config)
    baseline_report = read_report(baseline) if baseline else None
    ensure_writable_dir(output_dir)
    say("exporting the FP32 reference")
    reference = _export_reference(config, output_dir / "artifacts" / REFERENCE)
    made = [VariantArtifact(REFERENCE, "export", reference)]
    with progress_step("making the variants", len(variants)) as advance:
        for variant in variants:
            say(f"making variant {variant.name} ({variant.kind})")
            made.append(_make(variant, reference, config, output_dir / "artifacts" / variant.name))
            advance()
    if model_key is not None:
        _encrypt_at_rest(made, model_key, say)
    rows: list[dict[str, Any]] = []
    gates: list[GateResult] = []
    for artifact in made:
        if artifact.error is not None and artifact.skipped:
            gates.append(skipped(artifact.name, "-", "recipe", artifact.error))
        elif artifact.error is not None:
            gates.append(failed(artifact.name, "-", "recipe", artifact.error))
    runnable = {backend: runnable_on(backend, made, variants) for backend in config.bench.backends}
    if executor.name == "local":  # elsewhere, each node says what it can run
        gates += unavailable_here(runnable, config)
    bench = bench_variants(runnable, made, config, output_dir / "bench", executor, say, model_key)
    for backend in config.bench.backends:
        backend_rows, backend_gates = _judge_backend(backend, runnable[backend], bench, config)
        rows += backend_rows
        gates += backend_gates
    if baseline_report is not None:
        gates += _baseline_gates(rows, baseline_report, config)
    verdict = overall_verdict(gates)
    gate_entries = [gate.to_dict() for gate in gates]
    diagnoses, recommendation = _explain(gate_entries, made, rows, config, say)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "dlopt.gate.report",
        "dlopt_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": str(config.path),
        "baseline": str(baseline) if baseline else None,
        "verdict": verdict.value,
        "exit_code": int(exit_code(verdict)),
        "recommendation": recommendation,
        "diagnoses": diagnoses,
        "machine": cpu_info(),
        "tool_versions": tool_versions(),
        "config_sha256": sha256_file(config.path),
        "executor": executor.describe(),
        "shard": None if shard is None else {"index": shard.index, "count": shard.count},
        "variants": [_variant_entry(variant) for variant in made],
        "rows": rows,
        "gates": gate_entries,
    }
    report = portable(json_safe(report), output_dir)
    paths = write_reports(report, output_dir)
    warnings = [warning] if (warning := append_step_summary(report)) else []
    if not debug_metadata_kept():
        _remove_bench_scratch(output_dir)
    paths["attestation.json"] = attest_gate(report, output_dir, config, signing_key)
    if mlflow_uri is not None:
        warnings += _track(report, paths, made, config, mlflow_uri, say)
    return GateOutcome(report, verdict, exit_code(verdict), paths, warnings)


def _track(
    report: dict[str, Any],
    paths: dict[str, Path],
    made: Sequence[VariantArtifact],
    config: GateConfig,
    uri: str,
    say: Progress,
) -> list[str]:
    """Log the run to MLflow; a tracking server that fails is a warning (the reports are
    written already), never a lost verdict."""
    from dlopt.artifacts import manifest_path
    from dlopt.report.tracking import log_gate_run

    say(f"logging the run to MLflow ({uri})")
    manifests = {
        variant.name: manifest_path(variant.path)
        for variant in made
        if variant.path is not None and manifest_path(variant.path).is_file()
    }
    experiment = config.tracking.experiment or config.path.resolve().parent.name or "dlopt"
    try:
        log_gate_run(report, uri, experiment, list(paths.values()), manifests, config.path.parent)
    except DloptError as error:
        return [f"MLflow logging failed: {error.one_line()}"]
    return []


def _encrypt_at_rest(made: Sequence[VariantArtifact], key: bytes, say: Progress) -> None:
    """Every artifact made becomes `<name>.enc` beside its plaintext manifest; the plaintext
    files are deleted (they had to exist while the optimizers, which write files, ran)."""
    from dlopt.trust.encryption import encrypt_in_place

    for artifact in made:
        if artifact.path is not None:
            say(f"encrypting {artifact.name}")
            artifact.path = encrypt_in_place(artifact.path, key)


def _explain(
    gates: list[dict[str, Any]],
    made: Sequence[VariantArtifact],
    rows: list[dict[str, Any]],
    config: GateConfig,
    say: Progress,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The layers behind each failed accuracy gate, then the artifact to ship per backend."""
    from dlopt.gate.diagnose import diagnose_failures
    from dlopt.gate.recommend import recommend

    diagnoses = diagnose_failures(gates, made, rows, config, say)
    artifacts = {variant.name: str(variant.path) if variant.path else None for variant in made}
    return diagnoses, recommend(rows, gates, artifacts, diagnoses)


def _selected(variants: Sequence[VariantConfig], only: Sequence[str]) -> list[VariantConfig]:
    names = [variant.name for variant in variants]
    unknown = [name for name in only if name not in names and name != REFERENCE]
    if unknown:
        raise ConfigError(
            f"--only names unknown variant {unknown[0]!r}", f"variants: {', '.join(names)}"
        )
    return [variant for variant in variants if not only or variant.name in only]


def _export_reference(config: GateConfig, folder: Path) -> Path:
    from dlopt.optimize.export import ExportOptions, export_model

    weights = Path(config.model.weights) if config.model.weights else None
    results = export_model(
        config.model.source,
        folder,
        config.model.inputs,
        weights,
        ExportOptions(formats=("onnx",)),
        allow_pickle=config.model.trust_pickle,
    )
    return results[0].path


def _make(
    variant: VariantConfig, reference: Path, config: GateConfig, folder: Path
) -> VariantArtifact:
    """Run a variant's recipe; its failure is recorded (fails closed), not raised."""
    from dlopt.gate.recipes import make_variant

    try:
        path = make_variant(variant, reference, config, folder)
    except ConfigError:
        raise
    except BackendError as error:
        # An engine for a backend this machine lacks: skipped where the config allows it.
        optional = variant.recipe.get("backend") in config.bench.optional_backends
        reason = f"optional; {error.one_line()}" if optional else error.one_line()
        return VariantArtifact(
            variant.name, variant.kind, None, reason, dict(variant.recipe), skipped=optional
        )
    except DloptError as error:
        return VariantArtifact(
            variant.name, variant.kind, None, error.one_line(), dict(variant.recipe)
        )
    except Exception as error:  # a crash in a recipe fails its gates; the run goes on
        return VariantArtifact(
            variant.name,
            variant.kind,
            None,
            f"{variant.kind} crashed: {type(error).__name__}: {error}",
            dict(variant.recipe),
        )
    return VariantArtifact(variant.name, variant.kind, path, None, dict(variant.recipe))


def _judge_backend(
    backend_name: str,
    runnable: dict[str, VariantArtifact],
    bench: dict[str, Any],
    config: GateConfig,
) -> tuple[list[dict[str, Any]], list[GateResult]]:
    bench_rows = [row for row in bench["rows"] if row["backend"] == backend_name]
    if not runnable or not bench_rows:
        return [], []
    reference_path = next(path for path, variant in runnable.items() if variant.name == REFERENCE)
    reference_row = next(row for row in bench_rows if row["model"] == reference_path)
    rows: list[dict[str, Any]] = []
    gates: list[GateResult] = []
    for row in bench_rows:
        variant = runnable[row["model"]]
        is_reference = variant.name == REFERENCE
        rows.append(_report_row(variant.name, backend_name, row))
        if row["status"] == "skipped" and backend_name in config.bench.optional_backends:
            gates.append(skipped(variant.name, backend_name, "*", f"optional; {row['reason']}"))
            continue
        if row["status"] != "ok":
            gates.append(
                failed(variant.name, backend_name, "*", f"{row['status']}: {row['reason']}")
            )
            continue
        thresholds = config.thresholds_for(variant.name)
        drop = None if is_reference else _accuracy_drop(row, reference_row)
        gates += judge_row(variant.name, backend_name, row, thresholds, is_reference, drop)
    return rows, gates


def _accuracy_drop(row: dict[str, Any], reference_row: dict[str, Any]) -> Any:
    """Paired-bootstrap accuracy drop from the saved outputs (read a block at a time), when
    both rows have them."""
    from dlopt.harness.evaluation_stats import top1_correct
    from dlopt.harness.output_store import open_outputs

    output = row.get("metrics_output")
    candidate_file, reference_file = row.get("outputs_file"), reference_row.get("outputs_file")
    if not output or not candidate_file or not reference_file:
        return None
    if not (row.get("metrics") or {}).get("accuracy"):
        return None
    candidate, reference = open_outputs(candidate_file), open_outputs(reference_file)
    if output not in candidate.names or output not in reference.names:
        return None
    if not candidate.has_labels or candidate.count != reference.count:
        return None
    return paired_accuracy_drop_of(top1_correct(reference, output), top1_correct(candidate, output))


def _baseline_gates(
    rows: Sequence[dict[str, Any]], baseline: dict[str, Any], config: GateConfig
) -> list[GateResult]:
    previous = {(row["variant"], row["backend"]): row for row in baseline.get("rows", [])}
    gates: list[GateResult] = []
    for row in rows:
        if row["status"] != "ok":
            continue
        old = previous.get((row["variant"], row["backend"]))
        gates += judge_against_baseline(
            row["variant"],
            row["backend"],
            row["bench"],
            old["bench"] if old else None,
            config.thresholds_for(row["variant"]),
        )
    return gates


def _report_row(variant: str, backend: str, row: dict[str, Any]) -> dict[str, Any]:
    """The renderers' view of a bench row, with the raw bench row (and samples) kept under
    `bench` so that a later run can re-test against it."""
    latency = row.get("latency") or {}
    speedup, interval = speedup_of(row.get("latency_ratio_to_reference"))
    drift_entries = list((row.get("drift") or {}).values())
    accuracy = ((row.get("metrics") or {}).get("accuracy") or {}).get("value")
    peak = (row.get("memory") or {}).get("peak_rss_bytes")
    return {
        "variant": variant,
        "backend": backend,
        "status": row["status"],
        "reason": row.get("reason") or "",
        "latency_ms": {
            "p50": latency.get("p50_ms"),
            "p99": latency.get("p99_ms"),
            "samples": [ns / 1e6 for ns in latency.get("samples_ns") or []],
        }
        if latency
        else None,
        "speedup": {"ratio": speedup, "interval": interval.__dict__ if interval else None}
        if speedup
        else None,
        "metrics": {"accuracy": accuracy} if accuracy is not None else {},
        "drift": {"cosine": min(e["cosine"] for e in drift_entries if e.get("cosine") is not None)}
        if drift_entries
        else {},
        "peak_rss_mb": peak / MB if peak else None,
        "model_size_mb": row["size_bytes"] / MB if row.get("size_bytes") else None,
        "target": row.get("target"),
        "node": row.get("node"),
        "runtime_warnings": [
            warning.removeprefix(RUNTIME_WARNING)
            for warning in row.get("warnings") or []
            if warning.startswith(RUNTIME_WARNING)
        ],
        "bench": row,
    }


def _variant_entry(variant: VariantArtifact) -> dict[str, Any]:
    """The variant with the chain of manifests from its artifact back to the source."""
    chain: list[dict[str, Any]] = []
    path = variant.path
    while path is not None and len(chain) < 10:
        manifest = read_manifest(path)
        if manifest is None:
            break
        chain.append(manifest)
        parent = (manifest.get("parent") or {}).get("path")
        path = resolve_recorded(parent, path.parent) if parent else None
    return {
        "name": variant.name,
        "kind": variant.kind,
        "recipe": variant.recipe,
        "artifact": str(variant.path) if variant.path else None,
        "error": variant.error,
        "manifest_chain": chain,
    }


def _remove_bench_scratch(output_dir: Path) -> None:
    """The bench workers' job specs, logs and raw outputs: read by the gate, then removed, since
    they hold local paths and warnings (`--keep-debug-metadata` keeps them)."""
    import shutil

    shutil.rmtree(output_dir / "bench" / "jobs", ignore_errors=True)
