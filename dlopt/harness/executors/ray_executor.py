"""The Ray executor: each group of bench jobs (one backend, one target) as one Ray task, placed
on a node that has the target's resources.

On the node the task writes the group's files into a temporary folder (`shipping`), runs the
group there exactly as the local executor does (`group.run_group`: every pair in its own fresh
worker process, then the interleaved timing), and returns the result and the files the workers
wrote. Before anything is submitted, each group's needs are checked against the live nodes: a
group that no node can hold gets an `unavailable` result (a skipped row, or a failed one unless
the backend is optional) instead of waiting forever. A task that dies (its worker or node killed,
out of memory) or runs past its deadline gives a failed result with the reason; the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError, first_line
from dlopt.harness.executors.group import GroupJob, failed_group, run_group, unavailable_group
from dlopt.harness.executors.shipping import (
    DATA,
    INPUTS,
    Stage,
    artifact_files,
    materialize_data,
    pack,
    receive,
    relocated_source,
)

Progress = Callable[[str], None]
DEFAULT_CPUS = 1.0  # a task's CPUs when its target names none
# Beyond the jobs' own timeouts: sending files, the node's imports, results coming back.
SETUP_MARGIN_S = 300.0
WAIT_STEP_S = 5.0


def import_ray() -> Any:
    """The `ray` module; a ConfigError (exit 2) naming the extra when it is not installed."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError(
            "--executor ray needs Ray, which is not installed here",
            "install the extra: pip install 'dlopt[ray]'",
        ) from error
    return ray


class RayExecutor:
    """Runs groups as Ray tasks on the cluster at `address` (else RAY_ADDRESS, else a local
    cluster started for the run and stopped after it)."""

    name = "ray"

    def __init__(self, address: str | None = None, stage_uri: str | None = None) -> None:
        import_ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.stage_uri = stage_uri
        self.nodes: list[dict[str, Any]] = []

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address or "a local Ray cluster started for the run",
            "stage_uri": self.stage_uri,
            "nodes": self.nodes,
        }

    def run(
        self, groups: Sequence[GroupJob], folder: Path, progress: Progress | None = None
    ) -> list[dict[str, Any]]:
        ray = import_ray()
        say = progress or (lambda message: None)
        started = self._connect(ray)
        try:
            with tempfile.TemporaryDirectory(prefix="dlopt-ray-send-") as scratch:
                return self._run(ray, groups, folder, Path(scratch), say)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Connect (or start a local cluster); True when this call did, so it disconnects."""
        if ray.is_initialized():
            return False
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise ConfigError(
                f"cannot reach the Ray cluster at {self.address or 'a new local cluster'}: "
                f"{first_line(error)}",
                "give --ray-address (or RAY_ADDRESS) as host:port of the head node, or leave "
                "both unset to start a local cluster",
            ) from error
        return True

    def _run(
        self,
        ray: Any,
        groups: Sequence[GroupJob],
        folder: Path,
        scratch: Path,
        say: Progress,
    ) -> list[dict[str, Any]]:
        alive = [node for node in ray.nodes() if node.get("Alive")]
        self.nodes = [
            {
                "node_id": node["NodeID"],
                "hostname": node.get("NodeManagerHostname"),
                "resources": _public(node.get("Resources", {})),
            }
            for node in alive
        ]
        stage = Stage(
            f"{self.stage_uri.rstrip('/')}/{uuid.uuid4().hex}" if self.stage_uri else None
        )
        remote = ray.remote(run_on_node)
        results: dict[str, dict[str, Any]] = {}
        pending: dict[Any, tuple[GroupJob, float, float]] = {}
        data = _DataShipment(stage, scratch)
        try:
            for group in groups:
                needs = group.target.needs(DEFAULT_CPUS)
                missing = _unplaceable(needs, alive)
                if missing:
                    results[group.id] = unavailable_group(group, missing)
                    continue
                say(f"sending the {group.backend} jobs to the Ray cluster")
                payload = _payload(group, stage, data)
                options = {**group.target.ray_options(DEFAULT_CPUS), "max_retries": 0}
                reference = remote.options(name=f"dlopt {group.id}", **options).remote(payload)
                limit_s = group.timeout_s * group.worker_count + SETUP_MARGIN_S
                pending[reference] = (group, time.monotonic() + limit_s, limit_s)
            say(f"waiting for {len(pending)} Ray task(s)")
            while pending:
                self._collect(ray, pending, results, folder)
        except BaseException:  # Ctrl-C or a bug: the tasks (and their workers) go with us
            for reference in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(reference, force=True)
            raise
        return [results[group.id] for group in groups]

    def _collect(
        self,
        ray: Any,
        pending: dict[Any, tuple[GroupJob, float, float]],
        results: dict[str, dict[str, Any]],
        folder: Path,
    ) -> None:
        nearest = min(deadline for _, deadline, _ in pending.values())
        wait_s = max(0.0, min(WAIT_STEP_S, nearest - time.monotonic()))
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
        for reference in ready:
            group, _, _ = pending.pop(reference)
            try:
                returned = ray.get(reference)
            except ray.exceptions.RayTaskError as error:  # raised by dlopt's code on the node
                cause = error.cause if error.cause is not None else error
                results[group.id] = failed_group(group, f"the Ray task failed: {first_line(cause)}")
                continue
            except ray.exceptions.RayError as error:  # its worker or node died, out of memory...
                results[group.id] = failed_group(group, f"the Ray task died: {first_line(error)}")
                continue
            try:
                receive(returned["files"], folder)
            except ValueError as error:
                results[group.id] = failed_group(group, f"the Ray task's files: {error}")
                continue
            results[group.id] = returned["result"]
        now = time.monotonic()
        for reference, (group, deadline, limit_s) in list(pending.items()):
            if now >= deadline:
                with contextlib.suppress(Exception):
                    ray.cancel(reference, force=True)
                del pending[reference]
                results[group.id] = failed_group(
                    group, f"the Ray task ran past {limit_s:.0f} s and was cancelled"
                )


class _DataShipment:
    """The evaluation data, written once as `.npy` files and sent once for every group."""

    def __init__(self, stage: Stage, scratch: Path) -> None:
        self.stage = stage
        self.scratch = scratch
        self.sent: dict[str, dict[str, Any]] = {}

    def files(self, group: GroupJob) -> dict[str, Any]:
        from dlopt.backends.base import describe_artifact
        from dlopt.harness.worker import LATENCY_BATCHES

        worker = group.worker
        source = worker.get("data")
        if source is None or source == "synthetic":
            return {}
        if source not in self.sent:
            specs = next(
                (
                    info.inputs
                    for info in (describe_artifact(m.artifact) for m in group.models)
                    if info.inputs
                ),
                None,
            )
            if specs is None:
                raise ConfigError(
                    "the models name no inputs, so the data cannot be sent to Ray nodes",
                    "give models with manifests (dlopt export), or run with --executor local",
                )
            batch_size = int(worker.get("batch_size") or 1)
            limit = worker.get("eval_limit")
            # The timed runs rotate through the first batches, past the evaluation limit.
            limit = None if limit is None else max(int(limit), LATENCY_BATCHES * batch_size)
            folder = self.scratch / f"data-{len(self.sent)}"
            materialize_data(source, specs, folder, batch_size, limit, int(worker.get("seed", 0)))
            files = {f"{DATA}/{path.name}": path for path in sorted(folder.glob("*.npy"))}
            self.sent[source] = self.stage.send(files, "send")
        return self.sent[source]


def _payload(group: GroupJob, stage: Stage, data: _DataShipment) -> dict[str, Any]:
    """The group with its paths made relative to the node's folder, and the files to write."""
    from dlopt import __version__

    files: dict[str, Path] = {}
    folders: dict[Path, str] = {}
    relocated = group.to_dict()
    for model in relocated["models"]:
        base, paths = artifact_files(model["artifact"])
        if not paths:
            continue
        name = folders.setdefault(base, f"{INPUTS}/{len(folders)}")
        files.update({f"{name}/{path.relative_to(base)}": path for path in paths})
        model["artifact"] = relocated_source(model["artifact"], base, name)
    weights = relocated["worker"].get("weights")
    if weights:
        path = Path(weights).resolve()
        name = folders.setdefault(path.parent, f"{INPUTS}/{len(folders)}")
        files[f"{name}/{path.name}"] = path
        relocated["worker"]["weights"] = f"{name}/{path.name}"
    shipped = stage.send(files, "send")
    data_files = data.files(group)
    if data_files:
        shipped.update(data_files)
        relocated["worker"]["data"] = DATA
    return {
        "group": relocated,
        "files": shipped,
        "stage": stage.uri,
        "dlopt_version": __version__,
        "relocated": {
            "models": [m["id"] for m in relocated["models"] if m["artifact"].startswith(INPUTS)],
            "weights": bool(weights),
            "data": bool(data_files),
        },
    }


def run_on_node(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray task: write the files, run the group here, return its result and files."""
    from dlopt import __version__

    group = GroupJob.from_dict(payload["group"])
    if payload["dlopt_version"] != __version__:
        from dlopt.harness.executors.node import node_info

        reason = (
            f"this node runs dlopt {__version__}, the driver {payload['dlopt_version']}: "
            "install the same dlopt on every node"
        )
        return {"result": failed_group(group, reason, node_info()), "files": {}}
    with tempfile.TemporaryDirectory(prefix="dlopt-ray-") as scratch:
        root = Path(scratch)
        receive(payload["files"], root)
        moved = payload["relocated"]
        for model in group.models:
            if model.id in moved["models"]:
                model.artifact = f"{root}/{model.artifact}"
        for key in ("weights", "data"):
            if moved[key]:
                group.worker[key] = f"{root}/{group.worker[key]}"
        result = run_group(group, root / "work")
        files = pack(root / "work", Stage(payload["stage"]), f"results/{group.id}")
    return {"result": result, "files": files}


def _unplaceable(needs: Mapping[str, float], nodes: Sequence[Mapping[str, Any]]) -> str | None:
    """Why no live node can run a task with `needs`, or None when one can."""
    for node in nodes:
        offered = node.get("Resources", {})
        if all(offered.get(key, 0) >= amount for key, amount in needs.items()):
            return None
    wanted = ", ".join(_amount(key, amount) for key, amount in sorted(needs.items()))
    offers = "; ".join(
        f"{node.get('NodeManagerHostname', '?')}: "
        + ", ".join(_amount(k, v) for k, v in sorted(_public(node.get("Resources", {})).items()))
        for node in nodes
    )
    return f"no node of the Ray cluster has {wanted} (nodes offer {offers or 'nothing'})"


def _amount(key: str, value: float) -> str:
    return f"memory {value / 2**30:.1f} GiB" if key == "memory" else f"{key} {value:g}"


def _public(resources: Mapping[str, float]) -> dict[str, float]:
    """A node's resources without Ray's internal per-node markers (node:..., object store)."""
    return {
        key: value
        for key, value in resources.items()
        if not key.startswith("node:") and key != "object_store_memory"
    }
