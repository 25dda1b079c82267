"""OpenVINO on CPU: reads ONNX files and IR (`.xml` + `.bin`).

`INFERENCE_PRECISION_HINT` is always set: on CPUs with bf16, OpenVINO otherwise runs f32 models
in bf16, so an "FP32" baseline would be neither FP32 nor comparable. The default is f32; a
user's hint (`bf16`, `f16`) is passed through and recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dlopt.backends.base import (
    ArtifactInfo,
    Availability,
    CheckedSession,
    LoadOptions,
    describe_artifact,
    package_availability,
    rename_outputs,
    unsupported_format,
)
from dlopt.errors import BackendError
from dlopt.specs import TensorSpec, spec_from_graph

PRECISION_HINTS = ("f32", "bf16", "f16")
DEFAULT_PRECISION_HINT = "f32"
OV_DTYPES = {"f32": "float32", "f16": "float16", "i64": "int64", "i32": "int32", "boolean": "bool"}


def compile_properties(precision_hint: str) -> dict[str, Any]:
    """The properties an IR is compiled with here (threads apart), as manifests record them."""
    return {
        "device": "CPU",
        "INFERENCE_PRECISION_HINT": precision_hint,
        # The CPU plugin's default hint; explicit threads and one stream win over it.
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }


class OpenVinoBackend:
    name = "openvino"
    formats = frozenset({"onnx", "openvino_ir"})

    def availability(self) -> Availability:
        return package_availability("openvino", "openvino")

    def import_runtime(self) -> None:
        import openvino  # noqa: F401

    def load(self, artifact: str, options: LoadOptions) -> OpenVinoSession:
        info = describe_artifact(artifact)
        if info.format not in self.formats:
            raise unsupported_format(self.name, info, self.formats)
        hint = options.precision_hint or _recorded_hint(info) or DEFAULT_PRECISION_HINT
        if hint not in PRECISION_HINTS:
            raise BackendError(
                f"unknown OpenVINO precision hint {hint!r}",
                f"use one of {', '.join(PRECISION_HINTS)}",
            )
        return OpenVinoSession(info, options, hint)


def _recorded_hint(info: ArtifactInfo) -> str | None:
    """The precision hint the IR's manifest says it was made for (a bf16 IR records bf16)."""
    recipe = (info.manifest or {}).get("recipe") or {}
    recipe = recipe.get("parent_recipe", recipe) if info.encrypted else recipe
    hint = (recipe.get("compile_properties") or {}).get("INFERENCE_PRECISION_HINT")
    return hint if isinstance(hint, str) else None


class OpenVinoSession(CheckedSession):
    def __init__(self, artifact: ArtifactInfo, options: LoadOptions, precision_hint: str) -> None:
        import openvino as ov

        threads = options.resolved_threads()
        self.where = f"openvino session for {artifact.text}"
        core = ov.Core()
        if artifact.encrypted:
            from dlopt.backends.encrypted import openvino_model

            model = openvino_model(core, artifact, options)
        try:
            if not artifact.encrypted:
                model = core.read_model(str(artifact.path))
            properties = compile_properties(precision_hint)
            device = properties.pop("device")
            config = {**properties, "INFERENCE_NUM_THREADS": threads}
            self.compiled = core.compile_model(model, device, config)
        except Exception as error:
            raise BackendError(
                f"OpenVINO cannot load {artifact.text}: {str(error).splitlines()[0][:300]}",
                "check the model file, or convert it with openvino.convert_model",
            ) from error
        self.request = self.compiled.create_infer_request()
        self.inputs = artifact.inputs or [_spec_from_port(port) for port in self.compiled.inputs]
        self._input_names = {spec.name for spec in self.inputs}
        self._stable_names = artifact.outputs
        runtime_names = [_port_name(port, i) for i, port in enumerate(self.compiled.outputs)]
        self.output_names = (
            list(artifact.outputs)
            if artifact.outputs and len(artifact.outputs) == len(runtime_names)
            else runtime_names
        )
        self._runtime_names = runtime_names
        self.info: dict[str, Any] = {
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "streams": int(self.compiled.get_property("NUM_STREAMS")),
            "precision_hint": _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
            "requested_precision_hint": precision_hint,
            "device": "CPU",
            "openvino_version": ov.__version__,
        }

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import openvino as ov

        # set_tensor + infer() skips the result dict that infer(feeds) builds: ~10% of a
        # small model's call. Outputs are copied: the request reuses their memory.
        for name, array in feeds.items():
            contiguous = np.ascontiguousarray(array)
            # OpenVINO shares only writable memory; read-only data (e.g. from a file) is copied.
            shared = bool(contiguous.flags.writeable)
            self.request.set_tensor(name, ov.Tensor(contiguous, shared_memory=shared))
        self.request.infer()
        values = [self.request.get_tensor(port).data.copy() for port in self.compiled.outputs]
        return rename_outputs(
            list(zip(self._runtime_names, values, strict=True)), self._stable_names
        )

    def close(self) -> None:
        self.request = None
        self.compiled = None


def _type_name(value: Any) -> str:
    """`f32` for an `ov.Type` (what the compiled model really uses), else the text."""
    return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)


def _port_name(port: Any, index: int) -> str:
    try:
        return str(port.get_any_name())
    except RuntimeError:  # an unnamed output
        return f"output_{index}"


def _spec_from_port(port: Any) -> TensorSpec:
    name = _port_name(port, 0)
    dtype = OV_DTYPES.get(port.get_element_type().get_type_name())
    if dtype is None:
        raise BackendError(f"input {name!r} has type {port.get_element_type()}, not supported yet")
    dims = [dim.get_length() if dim.is_static else None for dim in port.get_partial_shape()]
    return spec_from_graph(name, dims, dtype)
