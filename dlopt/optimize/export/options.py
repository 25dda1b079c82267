"""What `dlopt export` can be asked for, its result, and the manifest both formats write."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.artifacts import Manifest
from dlopt.errors import ExportError
from dlopt.optimize.export.parity import ParityReport, Tolerance
from dlopt.sources import LoadedModel, source_record
from dlopt.specs import TensorSpec

FORMATS = ("onnx", "torchscript")
EXPORTERS = ("dynamo", "legacy")
TORCHSCRIPT_MODES = ("trace", "script")
# The protobuf limit is 2 GiB; leave headroom for the graph itself.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """How to export. Validated on creation."""

    formats: tuple[str, ...] = FORMATS
    opset: int | None = None
    exporter: str = "dynamo"
    torchscript_mode: str = "trace"
    tolerance: Tolerance | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.exporter, EXPORTERS, "exporter"),
            (self.torchscript_mode, TORCHSCRIPT_MODES, "TorchScript mode"),
        ):
            if value not in allowed:
                raise ExportError(f"unknown {what} {value!r}", f"use one of {', '.join(allowed)}")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise ExportError(
                    f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}, all"
                )
        if self.opset is not None and not 7 <= self.opset <= 30:
            raise ExportError(f"opset {self.opset} is out of range", "use an opset from 7 to 30")


@dataclass
class ExportResult:
    """One exported artifact and its parity check."""

    format: str
    path: Path
    manifest_path: Path
    parity: ParityReport
    details: dict[str, Any] = field(default_factory=dict)


def export_manifest(
    fmt: str,
    path: Path,
    loaded: LoadedModel,
    specs: Sequence[TensorSpec],
    output_names: Sequence[str],
    parity: ParityReport,
    recipe: dict[str, Any],
    opset: int | None = None,
) -> Manifest:
    return Manifest(
        format=fmt,
        file=path.name,
        precision="fp32",
        status="ok" if parity.passed else "failed",
        inputs=[spec.to_dict() for spec in specs],
        outputs=list(output_names),
        opset=opset,
        source=source_record(loaded),
        recipe={"step": "export", "format": fmt, **recipe},
        checks={"parity": parity.to_dict()},
    )
