"""The Ray executor on a real two-node Ray cluster started here (1 CPU each; the second node
advertises a custom resource): placement by target, refusal of a group no node can hold, a Ray
worker killed mid-job, files through a stage URI, and a whole gate through the cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from dlopt.harness.bench import BenchSettings, run_bench
from dlopt.harness.executors.ray_executor import RayExecutor
from dlopt.harness.executors.targets import Target
from tests.integration.conftest import SAMPLES
from tests.integration.test_bench import FIXTURES, QUICK_WARMUP, _export

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402 - after importorskip

TAG = "dlopt_test_node"
EVAL_SAMPLES = 9000  # more than two shards of SHARD_ALIGN samples


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """A head node (1 CPU) and a second node (1 CPU, the custom resource), joined by this
    process as their driver."""
    local = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    tagged = local.add_node(num_cpus=1, resources={TAG: 1})
    ray.init(address=local.address, log_to_driver=False)
    local.wait_for_nodes()
    try:
        yield {"address": local.address, "tagged": tagged.node_id}
    finally:
        ray.shutdown()
        local.shutdown()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("ray_bench")
    rng = np.random.default_rng(0)
    np.savez(
        folder / "eval.npz",
        x=rng.standard_normal((EVAL_SAMPLES, 8)).astype(np.float32),
        labels=rng.integers(0, 4, EVAL_SAMPLES),
    )
    return {
        "dir": str(folder),
        "data": str(folder / "eval.npz"),
        "fp32": _export("small_classifier", folder / "fp32.onnx"),
        "perturbed": _export("perturbed_classifier", folder / "perturbed.onnx"),
    }


def _settings(workspace: dict[str, str], **changes: Any) -> BenchSettings:
    values: dict[str, Any] = {
        "backends": ("onnxruntime",),
        "data": workspace["data"],
        "reference": workspace["fp32"],
        "batch_size": 16,
        "threads": 1,
        "iterations": 20,
        "warmup": QUICK_WARMUP,
        "timeout_s": 120,
    }
    return BenchSettings(**{**values, **changes})


def test_groups_run_where_their_target_says_and_match_a_local_run(
    cluster: dict[str, str], workspace: dict[str, str], tmp_path: Path
) -> None:
    models = [workspace["fp32"], workspace["perturbed"]]
    targets = [Target("tagged", {TAG: 1}, ("openvino",))]
    settings = _settings(workspace, backends=("onnxruntime", "openvino"), eval_shards=2)

    remote = run_bench(models, settings, tmp_path / "ray", executor=RayExecutor(), targets=targets)
    local = run_bench(
        models, _settings(workspace, backends=("onnxruntime", "openvino")), tmp_path / "local"
    )

    for model in models:
        placed = remote.row(model, "openvino")
        assert placed.status == "ok", placed.reason
        assert placed.target == "tagged" and placed.node is not None
        assert placed.node["ray_node_id"] == cluster["tagged"]  # only that node has the resource
        assert placed.node["cpu"]["isa_flags"] and "hostname" in placed.node
        assert remote.row(model, "onnxruntime").target == "default"
        for backend in ("onnxruntime", "openvino"):
            far, near = remote.row(model, backend), local.row(model, backend)
            assert far.samples == near.samples == EVAL_SAMPLES
            assert far.drift == near.drift  # two shards on a node == one pass here
            assert far.metrics == near.metrics
            assert far.latency is not None and far.latency["runs"] == 20
    parts = json.loads(Path(remote.row(models[1], "openvino").outputs_file or "").read_text())
    assert len(parts["parts"]) == 2
    assert remote.environment["executor"]["name"] == "ray"
    assert {node["node_id"] for node in remote.environment["executor"]["nodes"]} >= {
        cluster["tagged"]
    }


def test_a_group_no_node_can_hold_is_skipped_at_once(
    cluster: dict[str, str], workspace: dict[str, str], tmp_path: Path
) -> None:
    targets = [Target("nowhere", {"dlopt_no_such_resource": 1}, ("openvino",))]
    settings = _settings(workspace, backends=("onnxruntime", "openvino", "tensorrt"))
    started = time.monotonic()

    report = run_bench(
        [workspace["fp32"]], settings, tmp_path, executor=RayExecutor(), targets=targets
    )

    assert time.monotonic() - started < 120  # refused up front, never queued forever
    refused = report.row(workspace["fp32"], "openvino")
    assert refused.status == "skipped"
    assert "no node of the Ray cluster has" in (refused.reason or "")
    assert "dlopt_no_such_resource 1" in (refused.reason or "")
    tensorrt = report.row(workspace["fp32"], "tensorrt")  # needs a GPU when no target says
    assert tensorrt.status == "skipped" and "GPU 1" in (tensorrt.reason or "")
    assert report.row(workspace["fp32"], "onnxruntime").status == "ok"


def _kill_ray_worker_of(backend: str, killed: dict[str, int], stop: threading.Event) -> None:
    """Wait for a dlopt worker of `backend` started by a Ray worker; SIGKILL that Ray worker."""
    while not stop.is_set():
        for process in psutil.process_iter(["pid", "cmdline"]):
            command = process.info["cmdline"] or []
            if "dlopt.harness.worker" not in command:
                continue
            try:
                job = json.loads(
                    Path(command[command.index("dlopt.harness.worker") + 1]).read_text()
                )
                parent = process.parent()
            except (OSError, ValueError, psutil.Error):
                continue
            if (
                job["backend"] == backend
                and parent is not None
                and "ray::" in " ".join(parent.cmdline())
            ):
                killed["worker"], killed["ray"] = process.pid, parent.pid
                parent.kill()
                return
        time.sleep(0.2)


def test_a_ray_worker_killed_mid_job_fails_its_rows_and_the_rest_complete(
    cluster: dict[str, str], workspace: dict[str, str], tmp_path: Path
) -> None:
    hanging = f"{FIXTURES}:hanging_net"  # its first inference never returns
    settings = _settings(workspace, backends=("onnxruntime", "torch"), reference=None)
    killed: dict[str, int] = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_ray_worker_of, args=("torch", killed, stop))
    killer.start()
    try:
        report = run_bench(
            [workspace["fp32"], hanging],
            settings,
            tmp_path,
            executor=RayExecutor(),
            pairs_wanted={"onnxruntime": [workspace["fp32"]], "torch": [hanging]},
        )
    finally:
        stop.set()
        killer.join()

    assert killed, "no Ray worker ran the torch job"
    dead = report.row(hanging, "torch")
    assert dead.status == "failed"
    assert "the Ray task died" in (dead.reason or "") and "Worker" in (dead.reason or "")
    assert report.row(workspace["fp32"], "onnxruntime").status == "ok"
    deadline = time.monotonic() + 30
    while psutil.pid_exists(killed["worker"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    gone = not psutil.pid_exists(killed["worker"])
    assert gone or psutil.Process(killed["worker"]).status() == psutil.STATUS_ZOMBIE


def test_files_can_travel_through_a_stage_uri(
    cluster: dict[str, str], workspace: dict[str, str], tmp_path: Path
) -> None:
    stage = tmp_path / "stage"
    executor = RayExecutor(stage_uri=stage.as_uri())

    report = run_bench(
        [workspace["fp32"]], _settings(workspace), tmp_path / "run", executor=executor
    )

    row = report.row(workspace["fp32"], "onnxruntime")
    assert row.status == "ok", row.reason
    staged = {path.name for path in stage.rglob("*") if path.is_file()}
    assert {"fp32.onnx", "x.npy", "labels.npy", "result.json"} <= staged
    assert row.outputs_file is not None and Path(row.outputs_file).is_file()


def test_a_gate_runs_through_the_cluster(cluster: dict[str, str], tmp_path: Path) -> None:
    cnn = SAMPLES / "digits_cnn"
    config = tmp_path / "dlopt.toml"
    config.write_text(
        f"""
[model]
source = "{cnn / "model.py"}:create_model"
weights = "{cnn / "weights.pt"}"

[data]
evaluation = "{cnn / "data.py"}:evaluation"
evaluation_limit = 64

[[variants]]
name = "fp16"
quantize = {{ mode = "fp16", target = "onnxruntime" }}

[bench]
backends = ["onnxruntime", "tensorrt"]
optional_backends = ["tensorrt"]
min_time_s = 0.2
max_iterations = 200

[[targets]]
name = "tagged"
resources = {{ {TAG} = 1 }}
backends = ["onnxruntime"]

[gate]
model_size_mb_max = 10
top1_agreement_min = 0.95
"""
    )
    out = tmp_path / "reports"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlopt",
            "gate",
            str(config),
            "-o",
            str(out),
            "--executor",
            "ray",
            "--ray-address",
            cluster["address"],
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["executor"]["name"] == "ray" and report["verdict"] == "pass"
    rows = {(row["variant"], row["backend"]): row for row in report["rows"]}
    for variant in ("fp32", "fp16"):
        assert rows[(variant, "onnxruntime")]["node"]["ray_node_id"] == cluster["tagged"]
        assert rows[(variant, "tensorrt")]["status"] == "skipped"
    skipped = [g for g in report["gates"] if g["backend"] == "tensorrt"]
    assert skipped and all(g["verdict"] == "skipped" for g in skipped)
    assert "no node of the Ray cluster" in skipped[0]["reason"]
    summary = (out / "summary.md").read_text()
    assert "## Where it ran" in summary and f"Ray node {cluster['tagged'][:12]}" in summary
    assert "<h2>Where it ran</h2>" in (out / "report.html").read_text()
