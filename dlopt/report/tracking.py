"""A gate run in MLflow: one parent run per gate, one nested run per (variant, backend).

Parent: the config, executor and shard as params; the verdict, exit code, dlopt version and the
git commit as tags; counts of gates by verdict as metrics; the four reports and every variant's
manifest as artifacts. Nested (tag `mlflow.parentRunId`): the recipe as params; latency
percentiles, speedup and its 95% interval, accuracy, drift, memory and size as metrics; the
row's verdict (its worst gate), status, target and node as tags. Runs of one config share an
experiment (the config's folder name unless `[tracking] experiment` says otherwise), so a second
gate run appears beside the first in MLflow's UI.

The default store is `sqlite:///mlflow.db` beside the reports: no server needed, and
`mlflow ui --backend-store-uri sqlite:///reports/NAME/mlflow.db` shows it. Artifacts of a sqlite
store go to `mlartifacts/` beside the database (MLflow's default would be `./mlruns` in the
current folder).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError, DloptError, first_line

DEFAULT_URI = "default"  # `--mlflow` with no URI: sqlite:///mlflow.db beside the reports
SQLITE = "sqlite:///"
_VERDICT_ORDER = ("fail", "inconclusive", "pass", "skipped")


class TrackingError(DloptError):
    """MLflow refused the run (a server down, a store that cannot be written)."""


def require_mlflow() -> Any:
    """The `mlflow` module; a ConfigError (exit 2) naming the extra when it is missing."""
    try:
        import mlflow
    except ImportError as error:
        raise ConfigError(
            "--mlflow (or [tracking] mlflow) needs MLflow, which is not installed here",
            "install the extra: pip install 'dlopt[mlflow]'",
        ) from error
    for name in ("mlflow", "alembic"):  # their INFO lines (creating tables...) are noise here
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def resolve_uri(uri: str, reports: Path, base: Path) -> str:
    """`default` -> sqlite beside the reports; a relative sqlite path or a bare folder is
    relative to `base` (the config's folder); anything else is MLflow's to read."""
    if uri == DEFAULT_URI:
        return f"{SQLITE}{(reports / 'mlflow.db').resolve()}"
    if uri.startswith(SQLITE) and not uri[len(SQLITE) :].startswith("/"):
        return f"{SQLITE}{(base / uri[len(SQLITE) :]).resolve()}"
    if "://" not in uri and not uri.startswith(("databricks", "sqlite:")):
        return str((base / uri).resolve())
    return uri


def log_gate_run(
    report: Mapping[str, Any],
    uri: str,
    experiment: str,
    reports: Sequence[Path],
    manifests: Mapping[str, Path],
    source_folder: Path,
) -> str:
    """Log a gate report (see the module docstring); returns the parent run's id.

    Raises TrackingError when MLflow refuses (the reports stay written)."""
    require_mlflow()
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        experiment_id = _experiment(client, experiment, uri)
        parent = client.create_run(
            experiment_id, run_name=_run_name(report), tags=_parent_tags(report, source_folder)
        ).info.run_id
        _log(client, parent, _parent_params(report), _parent_metrics(report), {})
        for path in reports:
            client.log_artifact(parent, str(path), "reports")
        for variant, path in manifests.items():
            client.log_artifact(parent, str(path), f"manifests/{variant}")
        for row in report.get("rows", []):
            _log_row(client, experiment_id, parent, row, report)
        client.set_terminated(parent, "FINISHED")
    except Exception as error:
        # Whatever the store or server does, a tracking failure must not cost the verdict.
        raise TrackingError(
            f"cannot log to MLflow at {uri}: {first_line(error)}",
            "check the tracking URI (--mlflow / [tracking] mlflow); the reports are written",
        ) from error
    return str(parent)


def _experiment(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri.startswith(SQLITE):
        location = (Path(uri[len(SQLITE) :]).parent / "mlartifacts").resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def _run_name(report: Mapping[str, Any]) -> str:
    shard = report.get("shard")
    part = f" shard {shard['index']}/{shard['count']}" if shard else ""
    return f"gate {report.get('created_utc', '')}{part}"


def _parent_tags(report: Mapping[str, Any], source_folder: Path) -> dict[str, str]:
    tags = {
        "verdict": str(report.get("verdict")),
        "exit_code": str(report.get("exit_code")),
        "dlopt_version": str(report.get("dlopt_version")),
        "executor": str((report.get("executor") or {}).get("name", "local")),
    }
    commit = git_commit(source_folder)
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    return tags


def _parent_params(report: Mapping[str, Any]) -> dict[str, Any]:
    shard = report.get("shard")
    return {
        "config": report.get("config"),
        "config_sha256": report.get("config_sha256"),
        "shard": f"{shard['index']}/{shard['count']}" if shard else "none",
        "variants": ", ".join(v["name"] for v in report.get("variants", [])),
        "cpu": (report.get("machine") or {}).get("model"),
    }


def _parent_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    gates = report.get("gates", [])
    return {
        f"gates_{verdict}": float(sum(1 for gate in gates if gate["verdict"] == verdict))
        for verdict in _VERDICT_ORDER
    }


def _log_row(
    client: Any,
    experiment_id: str,
    parent: str,
    row: Mapping[str, Any],
    report: Mapping[str, Any],
) -> None:
    variant, backend = row["variant"], row["backend"]
    gates = [
        g for g in report.get("gates", []) if (g["variant"], g["backend"]) == (variant, backend)
    ]
    verdicts = {gate["verdict"] for gate in gates}
    verdict = next((v for v in _VERDICT_ORDER if v in verdicts), "none")
    entry: Mapping[str, Any] = next(
        (v for v in report.get("variants", []) if v["name"] == variant), {}
    )
    node = row.get("node") or {}
    tags = {
        "mlflow.parentRunId": parent,
        "variant": variant,
        "backend": backend,
        "verdict": verdict,
        "status": str(row.get("status")),
        "target": str(row.get("target") or ""),
        "node": str(node.get("hostname") or ""),
    }
    if row.get("reason"):
        tags["reason"] = str(row["reason"])
    run = client.create_run(experiment_id, run_name=f"{variant} on {backend}", tags=tags)
    params = {"variant": variant, "backend": backend, "kind": entry.get("kind")}
    params.update({f"recipe.{k}": v for k, v in _flat(entry.get("recipe") or {}).items()})
    metrics = _row_metrics(row)
    for gate in gates:
        if gate.get("measured") is not None:
            metrics[f"gate.{gate['gate']}"] = gate["measured"]
    _log(client, run.info.run_id, params, metrics, {})
    client.set_terminated(run.info.run_id, "FINISHED")


def _row_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    bench = row.get("bench") or {}
    latency = bench.get("latency") or {}
    speedup = row.get("speedup") or {}
    interval = speedup.get("interval") or {}
    accuracy = (bench.get("metrics") or {}).get("accuracy") or {}
    drift = list((bench.get("drift") or {}).values())
    worst = min(drift, key=lambda entry: entry.get("cosine") or 0.0) if drift else {}
    metrics = {
        **{f"latency_{p}_ms": latency.get(f"{p}_ms") for p in ("p50", "p90", "p95", "p99", "mean")},
        "throughput_items_per_s": latency.get("throughput_items_per_s"),
        "speedup": speedup.get("ratio"),
        "speedup_ci95_low": interval.get("low"),
        "speedup_ci95_high": interval.get("high"),
        "accuracy": accuracy.get("value"),
        "accuracy_reference": accuracy.get("reference"),
        "accuracy_change": accuracy.get("change"),
        "peak_rss_mb": row.get("peak_rss_mb"),
        "model_size_mb": row.get("model_size_mb"),
        "load_s": bench.get("load_s"),
        "first_inference_ms": bench.get("first_inference_ms"),
    }
    for key in ("cosine", "max_abs_error", "sqnr_db", "top1_agreement", "softmax_kl_divergence"):
        metrics[f"drift_{key}"] = worst.get(key)
    return metrics


def _log(
    client: Any,
    run_id: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    tags: Mapping[str, str],
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, float(value), now, 0)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ],
        params=[
            Param(key, str(value)[:6000]) for key, value in params.items() if value is not None
        ],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def git_commit(folder: Path) -> str | None:
    """HEAD of the git repository holding `folder`, or None (not a repository, no git)."""
    try:
        found = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None
