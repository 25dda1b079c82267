"""The tensorrt backend's engine cache: an engine it built from an ONNX file is kept and reused
as long as nothing that decides the engine's bytes has changed (trtexec and Polygraphy save and
load engine files by hand; here the key does it).

The key: the ONNX's sha256 (with its external data files), the TensorRT version, the GPU (name
and compute capability), the optimization profile and the build plan (precision, flags). The
folder: `$DLOPT_TENSORRT_CACHE`, else `$XDG_CACHE_HOME/dlopt/tensorrt`, else
`~/.cache/dlopt/tensorrt`. An entry is `<key digest>.plan` with its dlopt manifest beside it;
the manifest is written last, and an engine without one is not an entry, so a build killed half
way leaves nothing that is used. Nothing here imports tensorrt.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlopt.artifacts import Manifest, atomic_output, manifest_path, read_manifest, write_manifest
from dlopt.backends.tensorrt.engine_checks import GpuEnvironment

CACHE_ENV = "DLOPT_TENSORRT_CACHE"
ENGINE_SUFFIX = ".plan"


@dataclass(frozen=True)
class EngineKey:
    """Everything that decides what engine TensorRT builds from an ONNX file."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict[str, dict[str, list[int]]]  # input -> {"min", "opt", "max"}
    plan: dict[str, Any]  # TensorRTPlan.to_dict()

    def digest(self) -> str:
        """A stable hex name for the entry (sha256 of the key as canonical JSON)."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def engine_key(
    onnx_sha256: str,
    environment: GpuEnvironment,
    profile: Mapping[str, Sequence[Sequence[int]]],
    plan: Mapping[str, Any],
) -> EngineKey:
    """The key for `profile` given as input -> (min, opt, max) shapes."""
    shapes = {
        name: {
            kind: [int(d) for d in shape]
            for kind, shape in zip(("min", "opt", "max"), ranges, strict=True)
        }
        for name, ranges in sorted(profile.items())
    }
    return EngineKey(
        onnx_sha256,
        environment.tensorrt_version,
        environment.gpu_name,
        environment.compute_capability,
        shapes,
        dict(plan),
    )


def onnx_sha256(model: Path, external_data: Sequence[Path]) -> str:
    """sha256 of an ONNX file and its external data files (in name order): the weights can
    change without the graph file changing."""
    digest = hashlib.sha256()
    for path in [model, *sorted(set(external_data))]:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cache_folder(environ: Mapping[str, str] | None = None) -> Path:
    """Where engines are cached (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dlopt" / "tensorrt"


def entry_path(folder: Path, key: EngineKey) -> Path:
    return folder / f"{key.digest()}{ENGINE_SUFFIX}"


def cached_engine(folder: Path, key: EngineKey) -> Path | None:
    """The cached engine for `key`, or None: it needs its manifest, naming the same key."""
    path = entry_path(folder, key)
    if not path.is_file():
        return None
    manifest = read_manifest(path)
    if manifest is None or manifest.get("recipe", {}).get("engine_cache_key") != key.to_dict():
        return None
    return path


def store_engine(folder: Path, key: EngineKey, engine: bytes, manifest: Manifest) -> Path:
    """Write the engine, then its manifest (with the key), atomically; returns the engine path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = entry_path(folder, key)
    manifest_path(path).unlink(missing_ok=True)  # no entry while the engine is replaced
    with atomic_output(path) as temporary:
        temporary.write_bytes(engine)
    manifest.file = path.name
    manifest.recipe = {**manifest.recipe, "engine_cache_key": key.to_dict()}
    write_manifest(path, manifest)
    return path
