"""Temporary copies of a model whose intermediate tensors are extra outputs, so that a backend's
ordinary session returns them (Polygraphy's `--mark all`, ORT's `qdq_loss_debug`).

ONNX: the tensors become graph outputs, typed from onnx shape inference (`onnx.helper`). ORT's
own `modify_model_output_intermediate_tensors` exposes every float input and output of every
node (dequantized weights too) and flattens them; here only the tensors matched in the other
model are added, with their shapes, which keeps each run's outputs small.
OpenVINO IR: `Model.add_outputs` on the ports, saved as an IR with FP32 weights kept
(`ov.save_model` would otherwise compress them to FP16).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dlopt.errors import SourceError, first_line
from dlopt.harness.layerdiff.graph import fake_quantized_name

EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's 2 GB limit, with room for the graph


def expose_onnx(
    path: Path, tensors: Iterable[str], element_types: Mapping[str, int], folder: Path
) -> Path:
    """A copy of the ONNX model at `path` in `folder` with `tensors` as extra graph outputs."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as error:
        raise SourceError(
            f"cannot read {path}: {first_line(error)}", "is it an ONNX file?"
        ) from error
    present = {output.name for output in model.graph.output}
    for tensor in tensors:
        if tensor in present:
            continue
        present.add(tensor)
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(tensor, element_types[tensor], None)
        )
    exposed = folder / "exposed.onnx"
    large = model.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save(model, str(exposed), save_as_external_data=large, location="exposed.onnx.data")
    return exposed


def read_ir(path: Path) -> Any:
    """An `openvino.Model` read from an IR or ONNX file; SourceError when it cannot be read."""
    import openvino as ov

    try:
        return ov.Core().read_model(str(path))
    except Exception as error:
        raise SourceError(
            f"OpenVINO cannot read {path}: {first_line(error)}", "check the .xml and its .bin"
        ) from error


def expose_ir(path: Path, tensors: Iterable[str], folder: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the OpenVINO model at `path` in `folder` with `tensors` as extra outputs.

    `tensors` are names of ports, or `fake_quantized_name(X)` for the FakeQuantize output that
    X's consumers read. Returns the IR and a map from every name an output may come back
    under to the tensor asked for.
    """
    import openvino as ov

    from dlopt.harness.layerdiff.graph import canonical_name

    model = read_ir(path)
    wanted = set(tensors)
    ports: list[Any] = []
    names: dict[str, str] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Constant", "Result"):
            continue
        for port in op.outputs():
            name = canonical_name(port)
            if op.get_type_name() == "FakeQuantize":
                source = canonical_name(op.input(0).get_source_output())
                name = fake_quantized_name(source)
                if name in wanted and name not in names:
                    port.set_names({name})  # FakeQuantize outputs have no name of their own
            if name in wanted and name not in names.values():
                if not port.get_names():
                    port.set_names({name})
                ports.append(port)
                for alias in port.get_names():
                    names[str(alias)] = name
    if ports:
        model.add_outputs(ports)
    exposed = folder / "exposed.xml"
    ov.save_model(model, str(exposed), compress_to_fp16=False)
    return exposed, names
