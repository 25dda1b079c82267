"""External-data paths that leave the model's folder are refused (CVE-2024-27318)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlopt.errors import SourceError
from dlopt.onnx_safety import check_external_data_paths


def model_with_external_weight(folder: Path, location: str) -> Path:
    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), name="w")
    weight.data_location = TensorProto.EXTERNAL
    del weight.external_data[:]
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    weight.ClearField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[weight],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_escaping_locations_are_refused(tmp_path: Path, location: str) -> None:
    path = model_with_external_weight(tmp_path, location)

    with pytest.raises(SourceError) as caught:
        check_external_data_paths(path)

    assert "outside the model's folder" in caught.value.one_line()
    assert location in caught.value.one_line()


def test_data_beside_the_model_is_accepted(tmp_path: Path) -> None:
    path = model_with_external_weight(tmp_path, "weights.bin")

    assert check_external_data_paths(path) == [(tmp_path / "weights.bin").resolve()]


def test_a_file_that_is_not_onnx_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff")

    with pytest.raises(SourceError, match="not a readable ONNX model"):
        check_external_data_paths(path)


def test_every_command_refuses_it_through_parse_source(tmp_path: Path) -> None:
    from dlopt.sources import parse_source

    path = model_with_external_weight(tmp_path, "../../etc/passwd")

    with pytest.raises(SourceError, match="path-traversal"):
        parse_source(str(path))
