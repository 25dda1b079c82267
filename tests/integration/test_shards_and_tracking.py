"""CI shards of a gate merge into the unsharded verdict, mixed shards are refused, and every run
is tracked in a real MLflow store (sqlite), queried back with MlflowClient.

One unsharded run (`--mlflow` alone: sqlite beside its reports) and two shards (`--shard K/2`,
logging to that same store) of one config that lives in a git repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml

from tests.integration.conftest import SAMPLES, cnn_config_head

pytestmark = [pytest.mark.mlflow, pytest.mark.xdist_group("shards")]

CNN = SAMPLES / "digits_cnn"
CONFIG = f"""
{cnn_config_head(evaluation_limit=64)}
[[variants]]
name = "fp16"
quantize = {{ mode = "fp16", target = "onnxruntime" }}

[[variants]]
name = "int8"
quantize = {{ mode = "dynamic", target = "onnxruntime" }}

[bench]
backends = ["onnxruntime"]
min_time_s = 0.2
max_iterations = 200

[gate]
model_size_mb_max = 10
top1_agreement_min = 0.9

[tracking]
experiment = "digits-gate"
"""


def dlopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("sharded")
    project = folder / "project"
    project.mkdir()
    config = project / "dlopt.toml"
    config.write_text(CONFIG)
    git = ["git", "-C", str(project), "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "dlopt.toml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "config"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = folder / "out"
    full = dlopt("gate", str(config), "-o", str(out / "full"), "--mlflow")
    assert full.returncode == 0, full.stdout + full.stderr
    store = f"sqlite:///{out / 'full' / 'mlflow.db'}"
    for index in (1, 2):
        shard = dlopt(
            "gate", str(config), "-o", str(out / f"shard-{index}"), "--shard", f"{index}/2",
            "--mlflow", store,
        )  # fmt: skip
        assert shard.returncode == 0, shard.stdout + shard.stderr
    return {"out": out, "store": store, "commit": commit, "config": config}


def report(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_each_shard_runs_its_share_of_the_variants_and_the_reference(runs: dict) -> None:
    first, second = (report(runs["out"] / f"shard-{i}" / "report.json") for i in (1, 2))

    assert [v["name"] for v in first["variants"]] == ["fp32", "fp16"]
    assert [v["name"] for v in second["variants"]] == ["fp32", "int8"]
    assert first["shard"] == {"index": 1, "count": 2}
    assert first["config_sha256"] == second["config_sha256"]


def test_merged_shards_give_the_unsharded_verdict(runs: dict) -> None:
    out = runs["out"]
    merged_dir = out / "merged"

    result = dlopt(
        "report", "merge", str(out / "shard-1" / "report.json"),
        str(out / "shard-2" / "report.json"), "-o", str(merged_dir),
    )  # fmt: skip

    full = report(out / "full" / "report.json")
    merged = report(merged_dir / "report.json")
    assert result.returncode == full["exit_code"] == merged["exit_code"], result.stderr
    assert merged["verdict"] == full["verdict"] == "pass"

    def verdicts(data: dict[str, Any]) -> dict[tuple[str, str, str], str]:
        return {(g["variant"], g["backend"], g["gate"]): g["verdict"] for g in data["gates"]}

    unsharded, joined = verdicts(full), verdicts(merged)
    for (variant, backend, gate), verdict in unsharded.items():
        if variant == "fp32":  # measured in each shard, on each shard's machine
            for index in (1, 2):
                assert joined[(f"fp32 (shard {index}/2)", backend, gate)] == verdict
        else:
            assert joined[(variant, backend, gate)] == verdict
    assert len(joined) == len(unsharded) + sum(1 for key in unsharded if key[0] == "fp32")
    assert [shard["index"] for shard in merged["shards"]] == [1, 2]
    assert "fp32 (shard 2/2)" in (merged_dir / "summary.md").read_text()
    assert sum(1 for suite in JUnitXml.fromfile(str(merged_dir / "junit.xml")) for _ in suite) == (
        len(joined)
    )
    assert "int8" in (merged_dir / "report.html").read_text()
    assert dlopt("report", str(merged_dir / "report.json")).returncode == 0  # re-renders


def _altered(source: Path, target: Path, change: dict[str, Any]) -> Path:
    data = report(source)
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data))
    return target


def test_merge_refuses_shards_that_do_not_belong_together(runs: dict, tmp_path: Path) -> None:
    out = runs["out"]
    first, second = out / "shard-1" / "report.json", out / "shard-2" / "report.json"
    other_config = _altered(second, tmp_path / "c" / "report.json", {"config_sha256": "0" * 64})
    other_tools = _altered(
        second, tmp_path / "t" / "report.json", {"tool_versions": {"onnxruntime": "0.0.1"}}
    )
    cases = [
        ([first], "shard 2/2 is missing"),
        ([first, other_config], "different configs"),
        ([first, other_tools], "onnxruntime 0.0.1"),
        ([first, first, second], "shard 1/2 is given twice"),
        ([first, out / "full" / "report.json"], "is not a shard's report"),
    ]
    for paths, fragment in cases:
        result = dlopt("report", "merge", *map(str, paths), "-o", str(tmp_path / "merged"))

        assert result.returncode == 2, (fragment, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], result.stderr
        assert not (tmp_path / "merged" / "report.json").exists()


def test_every_run_is_tracked_in_mlflow(runs: dict, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    assert (runs["out"] / "full" / "mlflow.db").is_file()  # `--mlflow` alone: beside the reports
    client = MlflowClient(runs["store"])
    experiment = client.get_experiment_by_name("digits-gate")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id])
    parents = [run for run in found if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 3  # the unsharded run and both shards, side by side
    full = report(runs["out"] / "full" / "report.json")
    unsharded = next(run for run in parents if run.data.params["shard"] == "none")
    assert unsharded.data.tags["verdict"] == full["verdict"]
    assert unsharded.data.tags["git_commit"] == runs["commit"]
    assert unsharded.data.params["config_sha256"] == full["config_sha256"]
    assert unsharded.data.metrics["gates_fail"] == 0 and unsharded.data.metrics["gates_pass"] > 0
    children = {
        run.data.tags["variant"]: run
        for run in found
        if run.data.tags.get("mlflow.parentRunId") == unsharded.info.run_id
    }
    assert set(children) == {"fp32", "fp16", "int8"}
    int8 = children["int8"]
    rows = {row["variant"]: row for row in full["rows"]}
    assert int8.data.params["recipe.mode"] == "dynamic" and int8.data.params["kind"] == "quantize"
    assert int8.data.tags["verdict"] == "pass" and int8.data.tags["backend"] == "onnxruntime"
    assert int8.data.metrics["latency_p50_ms"] == rows["int8"]["latency_ms"]["p50"]
    assert int8.data.metrics["model_size_mb"] == pytest.approx(rows["int8"]["model_size_mb"])
    for key in ("speedup", "speedup_ci95_low", "speedup_ci95_high", "drift_cosine", "peak_rss_mb"):
        assert key in int8.data.metrics, key
    assert "accuracy" in int8.data.metrics and "gate.top1_agreement_min" in int8.data.metrics
    artifacts = {item.path for item in client.list_artifacts(unsharded.info.run_id, "reports")}
    assert artifacts == {
        f"reports/{name}"
        for name in ("report.json", "summary.md", "junit.xml", "report.html", "attestation.json")
    }
    assert client.list_artifacts(unsharded.info.run_id, "manifests/int8")
    downloaded = client.download_artifacts(
        unsharded.info.run_id, "reports/report.json", str(tmp_path)
    )
    assert json.loads(Path(downloaded).read_text())["verdict"] == full["verdict"]
