"""Exported artifacts lose what names the build machine (stack traces, debug pickles,
converter parameters) unless --keep-debug-metadata; the models still run the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny_models.py"
CHECKOUT = str(ROOT).encode()


def export(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "dlopt", "export", f"{TINY}:dict_output_net", "-o", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    return out


def all_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return b"".join(archive.read(name) for name in archive.namelist())
    return path.read_bytes()


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_exports_hold_no_source_paths_by_default(tmp_path: Path, exporter: str) -> None:
    out = export(tmp_path, "--exporter", exporter)

    for name in ("model.onnx", "model.ts"):
        assert CHECKOUT not in all_bytes(out / name), name
        record = json.loads((out / f"{name}.dlopt.json").read_text())["debug_metadata"]
        assert record["kept"] is False
    with zipfile.ZipFile(out / "model.ts") as archive:
        assert not [n for n in archive.namelist() if n.endswith(".debug_pkl")]


def test_keep_debug_metadata_keeps_the_exporters_stack_traces(tmp_path: Path) -> None:
    out = export(tmp_path, "--keep-debug-metadata")

    import onnx

    model = onnx.load(str(out / "model.onnx"))
    keys = {entry.key for node in model.graph.node for entry in node.metadata_props}
    assert "pkg.torch.onnx.stack_trace" in keys
    assert CHECKOUT in all_bytes(out / "model.onnx") and CHECKOUT in all_bytes(out / "model.ts")
    assert json.loads((out / "model.onnx.dlopt.json").read_text())["debug_metadata"]["kept"]


def test_stripped_models_compute_the_same(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    stripped, kept = export(tmp_path / "a"), export(tmp_path / "b", "--keep-debug-metadata")
    feed = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)

    def onnx_outputs(folder: Path) -> list[np.ndarray]:
        return ort.InferenceSession(str(folder / "model.onnx")).run(None, {"x": feed})

    def torchscript_outputs(folder: Path) -> list[np.ndarray]:
        module = torch.jit.load(str(folder / "model.ts"))
        return [t.detach().numpy() for t in module(torch.from_numpy(feed))]

    for run in (onnx_outputs, torchscript_outputs):
        for left, right in zip(run(stripped), run(kept), strict=True):
            np.testing.assert_array_equal(left, right)


def test_an_openvino_ir_loses_its_conversion_parameters(tmp_path: Path) -> None:
    out = export(tmp_path, "--format", "onnx")
    result = subprocess.run(
        [sys.executable, "-m", "dlopt", "build", str(out / "model.onnx"), "--backend", "openvino",
         "-o", str(tmp_path / "ir")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert b"conversion_parameters" not in (tmp_path / "ir" / "model.xml").read_bytes()
    record = json.loads((tmp_path / "ir" / "model.xml.dlopt.json").read_text())["debug_metadata"]
    assert record["entries_removed"] >= 1
