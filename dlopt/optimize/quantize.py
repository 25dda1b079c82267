"""`quantize_model`: INT8 ONNX for ONNX Runtime with `onnxruntime.quantization` (glue only).

- dynamic: `quantize_dynamic`, QInt8 weights, per-channel by default (QUInt8 weights gave no
  speedup and per-tensor lost accuracy on a MiniLM here: NOTES.md);
- static: `quantize_static` in QDQ format with activations QUInt8 and weights QInt8 (U8S8):
  ORT's default S8S8 QDQ ran slower than FP32 on x86 here, U8S8 ran 3x faster.
ORT's pre-processing (shape inference, optimization) runs first; symbolic shape inference
fails on transformer exports, so it falls back to `skip_symbolic_shape=True`, then to the
unprocessed model. Calibration streams batches from any dlopt data source; its sha256 and
sample count go into the manifest. The same model, data and options give the same bytes.

Other targets (OpenVINO through NNCF, torch, TensorRT Q/DQ) and the accuracy-aware mode are
not here yet: `dlopt build --backend openvino --precision int8` makes an NNCF INT8 IR.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlopt.artifacts import Manifest, read_manifest, sha256_file, staging_dir, write_manifest
from dlopt.errors import ConfigError, DataError, DloptError
from dlopt.specs import TensorSpec

MODES = ("dynamic", "static")
TARGETS = ("onnxruntime",)
METHODS = ("minmax", "entropy", "percentile")
CALIBRATION_BATCH = 8
Progress = Callable[[str], None]


class QuantizeError(DloptError):
    """Quantization failed for a reason the user can act on."""


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize; validated on creation (ConfigError names field, value and choices)."""

    mode: str = "static"
    target: str = "onnxruntime"
    calibration: str | None = None
    calibration_size: int = 300
    method: str = "minmax"
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("mode", MODES), ("target", TARGETS), ("method", METHODS)):
            value = getattr(self, name)
            if value not in allowed:
                hint = f"use one of {', '.join(allowed)}"
                if name == "target":
                    hint += (
                        "; for an NNCF INT8 OpenVINO IR use "
                        "`dlopt build --backend openvino --precision int8`"
                    )
                raise ConfigError(f"quantize {name} {value!r} is not available", hint)
        if self.calibration_size < 1:
            raise ConfigError(
                f"calibration_size {self.calibration_size} is out of range", "give at least 1"
            )
        if self.mode == "static" and not self.calibration:
            raise ConfigError(
                "static quantization needs calibration data",
                "pass --calibration DATA (e.g. models/digits_cnn/data.py:calibration)",
            )
        object.__setattr__(self, "exclude", tuple(self.exclude))


@dataclass
class QuantizeResult:
    path: Path
    manifest_path: Path
    details: dict[str, Any] = field(default_factory=dict)


def quantize_model(
    model: str, output_dir: Path, options: QuantizeOptions, progress: Progress | None = None
) -> QuantizeResult:
    """Quantize an FP32 ONNX model into `output_dir/model.onnx` (with its manifest).

    Raises SourceError (not an ONNX file), DataError (bad calibration data), ConfigError and
    QuantizeError.
    """
    from dlopt.sources import onnx_input_specs, parse_source

    say = progress or (lambda message: None)
    ref = parse_source(model)
    if ref.kind != "onnx" or ref.path is None:
        raise QuantizeError(
            f"{model} is a {ref.kind} model; ONNX Runtime quantization needs an ONNX file",
            "export it first: dlopt export SOURCE --format onnx",
        )
    parent_manifest = read_manifest(ref.path) or {}
    specs = [TensorSpec.from_dict(item) for item in parent_manifest.get("inputs", [])] or (
        onnx_input_specs(ref.path)
    )
    final_path = output_dir / "model.onnx"
    with staging_dir(output_dir) as staging:
        say("pre-processing (shape inference, optimization)")
        prepared, preprocessing = _preprocess(ref.path, staging / "prepared.onnx")
        excluded = _nodes_to_exclude(prepared, options.exclude)
        staged = staging / "model.onnx"
        calibration: dict[str, Any] = {}
        say(f"quantizing ({options.mode})")
        if options.mode == "dynamic":
            _quantize_dynamic(prepared, staged, options, excluded)
        else:
            calibration = _quantize_static(prepared, staged, options, specs, excluded)
        os.replace(staged, final_path)
    manifest = Manifest(
        format="onnx",
        file=final_path.name,
        precision="int8",
        inputs=[spec.to_dict() for spec in specs],
        outputs=list(parent_manifest.get("outputs", [])),
        opset=parent_manifest.get("opset"),
        source=dict(parent_manifest.get("source", {})),
        parent={
            "path": str(ref.path.resolve()),
            "sha256": sha256_file(ref.path),
            "format": "onnx",
            "precision": parent_manifest.get("precision", "fp32"),
        },
        recipe={
            "step": "quantize",
            **asdict(options),
            "exclude": list(options.exclude),
            "activation_type": "QUInt8" if options.mode == "static" else None,
            "weight_type": "QInt8",
            "quant_format": "QDQ" if options.mode == "static" else "QOperator (dynamic)",
            "preprocessing": preprocessing,
            "excluded_nodes": excluded,
            "calibration": calibration,
        },
    )
    return QuantizeResult(
        final_path,
        write_manifest(final_path, manifest),
        {"preprocessing": preprocessing, "calibration": calibration},
    )


def _preprocess(model: Path, output: Path) -> tuple[Path, str]:
    """ORT's quant_pre_process, with its documented fallbacks; returns (model, what ran)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    for skip_symbolic, label in ((False, "full"), (True, "skip_symbolic_shape")):
        try:
            quant_pre_process(str(model), str(output), skip_symbolic_shape=skip_symbolic)
            return output, label
        except Exception:  # ORT raises plain Exceptions here: try the next level
            continue
    return model, "none (pre-processing failed; quantizing the model as exported)"


def _nodes_to_exclude(model: Path, patterns: Sequence[str]) -> list[str]:
    """Node names matching `--exclude` given as a node name or an op type."""
    import onnx

    if not patterns:
        return []
    graph = onnx.load(str(model), load_external_data=False).graph
    matched = [
        node.name for node in graph.node if node.name in patterns or node.op_type in patterns
    ]
    known = {node.name for node in graph.node} | {node.op_type for node in graph.node}
    unknown = [pattern for pattern in patterns if pattern not in known]
    if unknown:
        raise ConfigError(
            f"--exclude {unknown[0]!r} names no node or op type of the model",
            "give a node name or an op type (e.g. Gemm, MatMul) from the ONNX graph",
        )
    return matched


def _quantize_dynamic(
    prepared: Path, output: Path, options: QuantizeOptions, excluded: list[str]
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        prepared,
        output,
        per_channel=options.per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded or None,
    )


def _quantize_static(
    prepared: Path,
    output: Path,
    options: QuantizeOptions,
    specs: Sequence[TensorSpec],
    excluded: list[str],
) -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from dlopt.data import open_data

    source = open_data(
        options.calibration, specs, CALIBRATION_BATCH, options.calibration_size, options.seed
    )

    class Reader(CalibrationDataReader):
        """Streams dlopt batches to ORT's calibrator, one at a time."""

        def __init__(self) -> None:
            self.batches: Iterator[Any] = iter(source)
            self.samples = 0

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.samples += batch.size
            return dict(batch.inputs)

    reader = Reader()
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[options.method]
    try:
        quantize_static(
            prepared,
            output,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=options.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=excluded or None,
            # Graphs fused by ORT's optimizer have tensors of unknown type without this.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except DloptError:
        raise
    except Exception as error:
        raise QuantizeError(
            f"ONNX Runtime's static quantization failed: {type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else ''}",
            "try --mode dynamic, another --method, or --exclude the failing op type",
        ) from error
    if reader.samples == 0:
        raise DataError(f"calibration data {options.calibration} gave no samples")
    return {
        "source": source.description,
        "sha256": source.sha256(),
        "samples": reader.samples,
        "method": options.method,
    }
