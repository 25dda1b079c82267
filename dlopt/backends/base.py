"""What every backend provides: availability, loading an artifact, and a checked session.

A `Session` is a small context manager (the Polygraphy runner shape): `inputs`, `run(feeds)`,
`close()`, and `info` (threads, precision hint, providers, ...), which the harness records.
`run` checks the feed names, shapes and dtypes against `inputs` before calling the runtime, so
a mismatch is a `BackendError` naming the input instead of a runtime traceback.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dlopt.artifacts import read_manifest
from dlopt.errors import BackendError
from dlopt.specs import TensorSpec


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; `reason` says why not (not installed, no GPU)."""

    ok: bool
    version: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class LoadOptions:
    """How to load an artifact: threads (None: all cores), an optional precision hint, the
    ONNX Runtime execution provider (None: the best the installed wheel offers), and the batch
    size it will be run at (engines built for a profile use it)."""

    threads: int | None = None
    precision_hint: str | None = None
    weights: Path | None = None  # for a model.py:factory source on the torch backend
    provider: str | None = None  # onnxruntime: auto, tensorrt, cuda or cpu
    allow_pickle: bool = False  # --trust-pickle: skip the .pt2 and weights pickle checks
    # The AES-256 key of encrypted artifacts; never printed (repr) nor written anywhere.
    model_key: bytes | None = field(default=None, repr=False)
    batch_size: int | None = None  # tensorrt: the batch an engine built from ONNX is for

    def resolved_threads(self) -> int:
        return self.threads if self.threads is not None else default_threads()


@runtime_checkable
class Session(Protocol):
    inputs: list[TensorSpec]
    output_names: list[str]
    info: dict[str, Any]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(self, *exc: object) -> None: ...


class Backend(Protocol):
    name: str
    formats: frozenset[str]

    def availability(self) -> Availability: ...

    def import_runtime(self) -> None:
        """Import the runtime module (so the harness can time and measure imports apart)."""
        ...

    def load(self, artifact: str, options: LoadOptions) -> Session: ...


def default_threads() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def package_availability(module: str, *distributions: str) -> Availability:
    """Installed or not, by import spec and distribution metadata: imports nothing heavy."""
    if importlib.util.find_spec(module) is None:
        return Availability(
            False, None, f"{module} is not installed (pip install {distributions[0]})"
        )
    for distribution in distributions:
        try:
            return Availability(True, importlib.metadata.version(distribution))
        except importlib.metadata.PackageNotFoundError:
            continue
    return Availability(True, None)


@dataclass
class ArtifactInfo:
    """An artifact path or source with what its manifest says (inputs, outputs, precision)."""

    text: str
    format: str
    path: Path | None
    inputs: list[TensorSpec] | None = None
    outputs: list[str] | None = None
    precision: str = "fp32"
    manifest: dict[str, Any] | None = field(default=None, repr=False)
    encrypted: bool = False  # an `.enc` container; `format` is the model's inside it


def describe_artifact(text: str) -> ArtifactInfo:
    """Recognise an artifact (by content) and read its manifest; raises DloptError."""
    from dlopt.sources import parse_source

    ref = parse_source(text)
    if ref.kind == "factory" or ref.path is None:
        from dlopt.sources import static_default_inputs

        # The model file's literal DLOPT_INPUTS, read without importing it (no torch here).
        inputs = static_default_inputs(ref.path) if ref.path is not None else None
        return ArtifactInfo(text, "factory", ref.path, inputs=inputs)
    manifest = read_manifest(ref.path)
    if ref.kind == "encrypted":
        from dlopt.trust.encryption import read_header

        info = _from_manifest(text, read_header(ref.path).inner_format, ref.path, manifest)
        info.encrypted = True
        return info
    if manifest is None:
        if ref.kind == "onnx":
            from dlopt.sources import onnx_input_specs

            return ArtifactInfo(text, ref.kind, ref.path, inputs=onnx_input_specs(ref.path))
        return ArtifactInfo(text, ref.kind, ref.path)
    return _from_manifest(text, ref.kind, ref.path, manifest)


def _from_manifest(
    text: str, kind: str, path: Path, manifest: dict[str, Any] | None
) -> ArtifactInfo:
    manifest = manifest or {}
    return ArtifactInfo(
        text,
        kind,
        path,
        inputs=[TensorSpec.from_dict(item) for item in manifest.get("inputs", [])] or None,
        outputs=list(manifest.get("outputs", [])) or None,
        precision=str(manifest.get("precision", "fp32")),
        manifest=manifest or None,
    )


class CheckedSession:
    """Base of the sessions: feed checking and the context-manager protocol."""

    inputs: list[TensorSpec]
    output_names: list[str]
    info: dict[str, Any]
    where: str

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for one feed; raises BackendError when the feed does not fit."""
        check_feeds(feeds, self.inputs, self.where)
        return self._run(feeds)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime's objects (idempotent)."""

    def __enter__(self) -> CheckedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_feeds(feeds: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], where: str) -> None:
    """Names, rank, static dims, shared axis sizes and dtype of a feed; raises BackendError."""
    names = [spec.name for spec in specs]
    missing = [name for name in names if name not in feeds]
    extra = [name for name in feeds if name not in names]
    if missing or extra:
        problem = f"missing {missing}" if missing else f"unexpected {extra}"
        raise BackendError(
            f"{where}: feed has {sorted(feeds)} but the model takes {names} ({problem})",
            "name the feed's arrays like the model inputs",
        )
    axis_sizes: dict[str, tuple[int, str]] = {}
    for spec in specs:
        array = feeds[spec.name]
        if array.ndim != len(spec.dims):
            raise BackendError(
                f"{where}: input {spec.name!r} has shape {array.shape} (rank {array.ndim}) but "
                f"the model wants rank {len(spec.dims)} ({spec})"
            )
        for axis, (size, dim) in enumerate(zip(array.shape, spec.dims, strict=True)):
            if dim.axis is None and size != dim.size:
                raise BackendError(
                    f"{where}: input {spec.name!r} has size {size} on axis {axis} but the model "
                    f"wants {dim.size} (shape {array.shape}, spec {spec})"
                )
            if dim.axis is not None:
                seen = axis_sizes.setdefault(dim.axis, (size, spec.name))
                if seen[0] != size:
                    raise BackendError(
                        f"{where}: axis {dim.axis!r} is {seen[0]} in {seen[1]!r} but {size} in "
                        f"{spec.name!r}"
                    )
        if array.dtype != np.dtype(spec.dtype):
            raise BackendError(
                f"{where}: input {spec.name!r} is {array.dtype} but the model wants {spec.dtype}",
                f"cast it with .astype('{spec.dtype}')",
            )


def rename_outputs(
    outputs: Sequence[tuple[str, np.ndarray]], stable_names: Sequence[str] | None
) -> dict[str, np.ndarray]:
    """Give runtime outputs dlopt's stable names (from the manifest) when their count matches."""
    if stable_names is not None and len(stable_names) == len(outputs):
        return {name: array for name, (_, array) in zip(stable_names, outputs, strict=True)}
    return dict(outputs)


def unsupported_format(
    backend: str, artifact: ArtifactInfo, formats: frozenset[str]
) -> BackendError:
    return BackendError(
        f"backend {backend} cannot run {artifact.text} ({artifact.format})",
        f"it runs {', '.join(sorted(formats))}; convert the model or pick another backend",
    )
