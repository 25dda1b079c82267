"""The engine the tensorrt backend runs for an ONNX file, as trtexec and Polygraphy do: FP32, or
the precision the ONNX carries (FP16 initializers -> fp16, Q/DQ -> int8), built for the shapes
a bench feeds, and kept in the engine cache (`engine_cache.py`) so a second run loads it.

`engine_source` (pure) says how an artifact reaches an engine; `bench_profile` (pure) is the
optimization profile; `engine_for_onnx` looks the engine up or builds it (TensorRT and a GPU
needed) and says which, with the build time apart from loading.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.artifacts import Manifest, atomic_write_text
from dlopt.backends.base import ArtifactInfo
from dlopt.backends.tensorrt.builder import (
    Profile,
    Shape,
    build_serialized_engine,
    inspect_onnx,
)
from dlopt.backends.tensorrt.engine_cache import (
    cache_folder,
    cached_engine,
    engine_key,
    onnx_sha256,
    store_engine,
)
from dlopt.backends.tensorrt.plan import plan_tensorrt_build
from dlopt.errors import BackendError
from dlopt.specs import TensorSpec

DYNAMIC_MIN = 1


def engine_source(info: ArtifactInfo) -> str:
    """`plan` (a serialized engine with its dlopt manifest) or `onnx` (build one first).

    Raises BackendError for anything else, naming what the backend takes.
    """
    manifest_format = (info.manifest or {}).get("format")
    if info.format == "tensorrt_plan" and manifest_format == "tensorrt_plan":
        return "plan"
    if info.format == "tensorrt_plan":
        raise BackendError(
            f"{info.text} has no dlopt manifest, so its TensorRT version and GPU are unknown",
            "build it with dlopt build --backend tensorrt, which records them, or give the ONNX",
        )
    if info.format == "onnx":
        return "onnx"
    raise BackendError(
        f"backend tensorrt cannot run {info.text} ({info.format})",
        "give it an ONNX file (it builds the engine) or an engine from dlopt build",
    )


def bench_profile(specs: Sequence[TensorSpec], batch_size: int | None = None) -> Profile:
    """Input -> (min, opt, max) shapes for an engine benched at `batch_size`.

    Static dims stay; the leading dynamic (batch) axis runs from 1 to `batch_size` (else its
    example size), optimized for that; other dynamic axes from 1 to their example size (widen
    them with dlopt build --shapes).
    """
    profile: dict[str, tuple[Shape, Shape, Shape]] = {}
    for spec in specs:
        low, high = [], []
        for index, dim in enumerate(spec.dims):
            if dim.axis is None:
                low.append(dim.size)
                high.append(dim.size)
                continue
            low.append(DYNAMIC_MIN)
            high.append(batch_size if index == 0 and batch_size else dim.size)
        profile[spec.name] = (tuple(low), tuple(high), tuple(high))
    return profile


@dataclass(frozen=True)
class OnnxEngine:
    """The engine for an ONNX file and how it was obtained (for the session's info)."""

    path: Path
    cache: str  # "hit" or "built"
    build_s: float | None  # None on a cache hit

    def info(self, onnx: Path) -> dict[str, Any]:
        return {
            "engine_built_from": str(onnx),
            "engine_path": str(self.path),
            "engine_cache": self.cache,
            "engine_build_s": self.build_s,
        }


def engine_for_onnx(
    info: ArtifactInfo, batch_size: int | None, folder: Path | None = None
) -> OnnxEngine:
    """The cached engine for this ONNX, profile, TensorRT and GPU, or a new one (cached).

    Raises ConfigError for Q/DQ TensorRT cannot build, EngineBuildError when TensorRT fails.
    """
    from dlopt.backends.tensorrt.cuda import gpu_environment
    from dlopt.onnx_safety import check_external_data_paths

    assert info.path is not None and info.inputs  # describe_artifact gives both for ONNX
    onnx = info.path
    facts = inspect_onnx(onnx)
    environment = gpu_environment()
    plan = plan_tensorrt_build(facts.precision, facts.precision, environment.tensorrt_version)
    profile = bench_profile(info.inputs, batch_size)
    sha256 = onnx_sha256(onnx, check_external_data_paths(onnx))
    key = engine_key(sha256, environment, profile, plan.to_dict())
    folder = folder or cache_folder()
    cached = cached_engine(folder, key)
    if cached is not None:
        return OnnxEngine(cached, "hit", None)
    started = time.perf_counter()
    engine, log_lines = build_serialized_engine(onnx, plan, profile)
    build_s = time.perf_counter() - started
    manifest = Manifest(
        format="tensorrt_plan",
        file="",
        precision=plan.precision,
        inputs=[spec.to_dict() for spec in info.inputs],
        outputs=list(info.outputs or []),
        parent={"path": str(onnx.resolve()), "sha256": sha256, "format": "onnx"},
        recipe={
            "step": "build",
            "backend": "tensorrt",
            "built_by": "the tensorrt backend, from the ONNX it was given",
            "plan": plan.to_dict(),
            "profile": key.profile,
            "build_s": build_s,
            # The backend reads this block to refuse engines from another TensorRT or GPU.
            "tensorrt": {**environment.to_dict(), "version_compatible": False},
        },
    )
    manifest.tool_versions["tensorrt"] = environment.tensorrt_version
    path = store_engine(folder, key, engine, manifest)
    atomic_write_text(path.with_suffix(".log"), "\n".join(log_lines) + "\n")
    return OnnxEngine(path, "built", build_s)
