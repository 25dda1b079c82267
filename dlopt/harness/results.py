"""What a bench run produces: one row per (model, backend) pair, and the report around them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dlopt.jsonio import json_safe

BENCH_SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped")


@dataclass
class BenchRow:
    """One (model, backend) pair: its measurements, or why it failed or was skipped."""

    model: str
    backend: str
    status: str
    reason: str | None = None
    is_reference: bool = False
    format: str | None = None
    size_bytes: int | None = None
    imports_s: float | None = None
    load_s: float | None = None
    build_s: float | None = None  # engine built while loading (tensorrt given an ONNX)
    first_inference_ms: float | None = None
    latency: dict[str, Any] | None = None
    latency_ratio_to_reference: dict[str, Any] | None = None
    memory: dict[str, int] | None = None
    samples: int | None = None
    drift: dict[str, dict[str, Any]] | None = None
    metrics: dict[str, dict[str, Any]] | None = None
    metrics_output: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    outputs_file: str | None = None
    target: str | None = None  # the kind of node it ran on (`[[targets]]`), or "default"
    node: dict[str, Any] | None = None  # the machine: hostname, Ray node id, CPU, GPUs


@dataclass
class BenchReport:
    rows: list[BenchRow]
    settings: dict[str, Any]
    environment: dict[str, Any]
    created_utc: str
    schema_version: int = BENCH_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    def row(self, model: str, backend: str) -> BenchRow:
        return next(r for r in self.rows if r.model == model and r.backend == backend)
