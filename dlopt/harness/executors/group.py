"""A group of bench jobs: every model measured on one backend, on one kind of node.

`run_group` runs a group where it is called (here, or on a Ray node): it checks the backend is
available on this machine, then runs each (model, shard of the evaluation set) in a fresh worker
process (`solo` when a model is alone on its backend and the set is not sharded, else `outputs`),
then one `interleaved` worker that times the backend's models A B A B ... Its result is plain
JSON data with paths relative to the group's folder, so it can come back from another machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlopt.harness.executors.targets import Target
from dlopt.harness.worker import JobModel, WorkerJob

Progress = Callable[[str], None]


@dataclass
class GroupJob:
    """The jobs of one (backend, target): models by pair id, the worker settings shared by every
    job, and the evaluation set's shards (`[start, stop)`; stop None: to the end)."""

    id: str
    backend: str
    target: Target
    models: list[JobModel]
    worker: dict[str, Any]
    ranges: list[tuple[int, int | None]] = field(default_factory=lambda: [(0, None)])
    timeout_s: float = 900.0

    @property
    def worker_count(self) -> int:
        """Worker processes the group starts at most (for an overall deadline)."""
        return len(self.models) * len(self.ranges) + 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = {
            "name": self.target.name,
            "resources": dict(self.target.resources),
            "backends": list(self.target.backends),
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupJob:
        target = data["target"]
        return cls(
            data["id"],
            data["backend"],
            Target(target["name"], target["resources"], tuple(target["backends"])),
            [JobModel(**model) for model in data["models"]],
            dict(data["worker"]),
            [(int(start), None if stop is None else int(stop)) for start, stop in data["ranges"]],
            float(data["timeout_s"]),
        )


def failed_group(
    group: GroupJob, reason: str, node: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The result of a group whose jobs did not run or did not come back: its rows fail."""
    return {
        "group": group.id,
        "node": node,
        "unavailable": None,
        "failed": reason,
        "pairs": {},
        "interleaved": None,
    }


def unavailable_group(group: GroupJob, reason: str) -> dict[str, Any]:
    """The result of a group that cannot run anywhere it may: its rows are skipped."""
    return {**failed_group(group, ""), "failed": None, "unavailable": reason}


def run_group(
    group: GroupJob,
    folder: Path,
    progress: Progress | None = None,
    model_key: bytes | None = None,
) -> dict[str, Any]:
    """Run the group's jobs here, in fresh worker processes; returns the group's result:
    `unavailable` (the backend cannot run here: the rows are skipped), or per pair its worker
    result (shards merged) or failure reason, and the interleaved timing's result. Each
    worker gets `model_key` (encrypted artifacts) on its stdin."""
    from dlopt.backends import get_backend
    from dlopt.harness.executors.node import node_info
    from dlopt.harness.worker_process import run_worker

    say = progress or (lambda message: None)
    result: dict[str, Any] = {
        "group": group.id,
        "node": None,
        "unavailable": None,
        "failed": None,
        "pairs": {},
        "interleaved": None,
    }
    availability = get_backend(group.backend).availability()
    if not availability.ok:
        result["unavailable"] = availability.reason
        result["node"] = node_info()
        return result
    solo = len(group.models) == 1 and len(group.ranges) == 1
    for model in group.models:
        merged: dict[str, Any] | None = None
        outcome: dict[str, Any] = {"status": "ok", "reason": None, "parts": []}
        for index, (start, stop) in enumerate(group.ranges):
            shard = "" if len(group.ranges) == 1 else f"-s{index}"
            say(f"{model.artifact} on {group.backend}{_shard_note(index, group.ranges)}")
            job = _job(group, "solo" if solo else "outputs", [model], folder / f"{model.id}{shard}")
            job.eval_start, job.eval_stop = start, stop
            measured, reason = run_worker(job, group.timeout_s, model_key)
            if measured is None:
                outcome = {"status": "failed", "reason": reason, "parts": []}
                break
            part = measured["models"][model.id].pop("outputs_part")
            outcome["parts"].append(os.path.relpath(part, folder))
            merged = _merge_shards(merged, measured, model.id)
        outcome["result"] = merged if outcome["status"] == "ok" else None
        result["pairs"][model.id] = outcome
    done = [model for model in group.models if result["pairs"][model.id]["status"] == "ok"]
    if not solo and done:
        say(f"interleaved timed runs on {group.backend}")
        job = _job(group, "interleaved", done, folder / f"{group.id}-ab")
        measured, reason = run_worker(job, group.timeout_s, model_key)
        result["interleaved"] = {"result": measured, "reason": reason}
    result["node"] = node_info()  # after the jobs: reading the hardware may start `uname`
    return result


def _shard_note(index: int, ranges: list[tuple[int, int | None]]) -> str:
    if len(ranges) == 1:
        return ""
    start, stop = ranges[index]
    return f" (samples {start} to {stop}, shard {index + 1}/{len(ranges)})"


def _job(group: GroupJob, mode: str, models: list[JobModel], directory: Path) -> WorkerJob:
    return WorkerJob(
        mode=mode, backend=group.backend, models=models, output_dir=str(directory), **group.worker
    )


def _merge_shards(
    merged: dict[str, Any] | None, result: dict[str, Any], model_id: str
) -> dict[str, Any]:
    """One pair's worker results over the shards: load and first-inference figures from the
    first shard, samples summed, each memory figure the highest of any shard's process."""
    if merged is None:
        return result
    before, after = merged["models"][model_id], result["models"][model_id]
    before["samples"] = (before.get("samples") or 0) + (after.get("samples") or 0)
    memory = before.get("memory") or {}
    for key, value in (after.get("memory") or {}).items():
        memory[key] = max(memory.get(key) or 0, value or 0)
    before["memory"] = memory
    return merged
