"""Writing OpenVINO IR files, shared by `build --backend openvino` and `quantize --target
openvino`: stable generated names and one save with full-disk handling."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dlopt.errors import ArtifactError, first_line

# OpenVINO's generated node names: op type, underscore, a process-wide instance counter.
GENERATED_NAME = re.compile(r"([A-Z][A-Za-z0-9]*)_\d+")
GENERATED_MODEL_NAME = re.compile(r"Model\d+")


def number_generated_names(ov_model: Any) -> None:
    """Renumber generated names (`Reshape_330400`, `Model12`) by position in the graph, in place.

    OpenVINO numbers unnamed nodes and models from process-wide counters, so the same build run
    twice in one process (a gate, a notebook) wrote different model.xml files; numbered by
    topological position they are byte-identical. Parameters and Results keep names that
    OpenVINO did not make up (a user's `Input_1`).
    """
    if GENERATED_MODEL_NAME.fullmatch(ov_model.get_friendly_name()):
        ov_model.set_friendly_name("Model")
    ops = list(ov_model.get_ordered_ops())
    renamed: dict[int, str] = {}
    for index, op in enumerate(ops):
        match = GENERATED_NAME.fullmatch(op.get_friendly_name())
        kind = op.get_type_name()
        if match and (kind not in ("Parameter", "Result") or match.group(1) == kind):
            renamed[index] = match.group(1)
    taken = {op.get_friendly_name() for index, op in enumerate(ops) if index not in renamed}
    for index, prefix in renamed.items():
        name = f"{prefix}_{index}"
        while name in taken:
            name += "_"
        taken.add(name)
        ops[index].set_friendly_name(name)


def save_ir(ov_model: Any, path: Path, compress_to_fp16: bool) -> None:
    """`ov.save_model` with stable names and an explicit weight precision (OpenVINO would
    compress every weight to FP16 by default); a failed write is an ArtifactError."""
    import openvino as ov

    number_generated_names(ov_model)
    try:
        ov.save_model(ov_model, str(path), compress_to_fp16=compress_to_fp16)
    except RuntimeError as error:
        # OpenVINO's C++ writer reports a full disk as "basic_ios::clear: iostream error".
        raise ArtifactError(
            f"cannot save the IR to {path.parent}: {first_line(error, 200)}",
            "free disk space there or choose a folder you can write to (-o)",
        ) from error
