"""Building TensorRT engines from ONNX: what `dlopt build --backend tensorrt` and the tensorrt
backend (given an ONNX file, as trtexec and Polygraphy are) both run.

- `inspect_onnx`: the precision an ONNX graph carries (Q/DQ -> int8, FP16 initializers ->
  fp16, else fp32) and a refusal of Q/DQ that TensorRT cannot build (asymmetric or uint8, as
  ONNX Runtime's U8S8 quantization writes): the ONNX parser needs zero points of 0.
- `build_serialized_engine`: parse, one optimization profile, the builder flags of a
  `TensorRTPlan`, an optional timing cache read before and written after; returns the engine
  bytes and the builder's log.
tensorrt and onnx are imported inside the functions (nothing heavy at import time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.artifacts import atomic_output
from dlopt.backends.tensorrt.plan import TensorRTPlan, detect_onnx_precision, qdq_refusal
from dlopt.errors import ConfigError, DloptError

Shape = tuple[int, ...]
# Input name -> (min, opt, max) shapes of the engine's one optimization profile.
Profile = Mapping[str, tuple[Shape, Shape, Shape]]


class EngineBuildError(DloptError):
    """TensorRT cannot parse or build this ONNX (the builder's own words, and a fix). Not a
    BackendError: the backend is there, the model is what it refuses (a gate fails the row
    instead of skipping an optional backend)."""


@dataclass(frozen=True)
class OnnxFacts:
    """What an engine build needs to know about an ONNX file before TensorRT reads it."""

    precision: str  # fp32, fp16 or int8


def inspect_onnx(path: Path) -> OnnxFacts:
    """The precision `path` carries; raises ConfigError for Q/DQ TensorRT cannot build."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    nodes = [*model.graph.node, *(node for f in model.functions for node in f.node)]
    names = {onnx.TensorProto.FLOAT: "float", onnx.TensorProto.FLOAT16: "float16"}
    types = {names[t.data_type] for t in model.graph.initializer if t.data_type in names}
    precision = detect_onnx_precision((node.op_type for node in nodes), types)
    if precision == "int8":
        problem = qdq_refusal(_zero_points(model, nodes))
        if problem is not None:
            raise ConfigError(
                f"{path} {problem}",
                "quantize the FP32 ONNX for TensorRT: dlopt quantize MODEL.onnx --target tensorrt",
            )
    return OnnxFacts(precision)


def _zero_points(model: Any, nodes: Sequence[Any]) -> list[tuple[str, bool]]:
    """(element type, all zero) of each Q/DQ zero point that is an initializer."""
    import onnx
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    found: list[tuple[str, bool]] = []
    for node in nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        tensor = initializers.get(node.input[2])
        if tensor is None:
            continue
        element = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
        found.append((element, not numpy_helper.to_array(tensor).any()))
    return found


def build_serialized_engine(
    onnx_path: Path,
    plan: TensorRTPlan,
    profile: Profile,
    workspace_bytes: int | None = None,
    timing_cache: Path | None = None,
) -> tuple[bytes, list[str]]:
    """A serialized engine for `onnx_path` and the builder's log lines.

    Raises EngineBuildError when the parser rejects the graph, an input has no profile, or
    the build fails (with the builder's last error).
    """
    import tensorrt as trt

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.lines.append(f"[{str(severity).rsplit('.', 1)[-1]}] {msg}")

    logger = CapturingLogger()
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT's ONNX parser rejects {onnx_path.name}: {'; '.join(errors)[:400]}",
            "check the opset and ops against TensorRT's supported ONNX operators",
        )
    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in plan.set_builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.clear_builder_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    optimization_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shapes = profile.get(tensor.name)
        if shapes is None:
            raise EngineBuildError(f"the ONNX input {tensor.name!r} has no input spec")
        optimization_profile.set_shape(tensor.name, *shapes)
    config.add_optimization_profile(optimization_profile)
    cache_data = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_data)
    config.set_timing_cache(cache, False)  # ignore_mismatch: refuse a cache from another GPU
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = [line for line in logger.lines if line.startswith(("[ERROR]", "[INTERNAL"))]
        raise EngineBuildError(
            f"TensorRT could not build an engine from {onnx_path.name}: "
            f"{(errors or logger.lines or ['no log'])[-1][:400]}",
            "try a larger workspace or narrower input shapes",
        )
    if timing_cache is not None:
        with atomic_output(timing_cache) as temporary:
            temporary.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), logger.lines
