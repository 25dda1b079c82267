"""TensorRT for real: builds, timing cache reuse, runs against ONNX Runtime, refusals.

Skipped (by tests/gpu/conftest.py) without nvidia-smi and TensorRT; on a machine with an NVIDIA
GPU run `pip install 'dlopt[tensorrt]' cuda-python nvidia-ml-py` then `pytest tests/gpu`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dlopt.artifacts import write_manifest
from dlopt.backends import get_backend
from dlopt.backends.base import LoadOptions
from dlopt.errors import BackendError
from dlopt.optimize.build import BuildOptions, build_engine
from dlopt.specs import random_feed

ROOT = Path(__file__).resolve().parents[2]
DIGITS = f"{ROOT / 'models' / 'digits_cnn' / 'model.py'}:create_model"
WEIGHTS = ROOT / "models" / "digits_cnn" / "weights.pt"
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dlopt.optimize.export import ExportOptions, export_model

    folder = tmp_path_factory.mktemp("digits_onnx")
    export_model(DIGITS, folder, weights=WEIGHTS, options=ExportOptions(formats=("onnx",)))
    return folder / "model.onnx"


def _ort(path: Path) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_onnxruntime_at_several_batch_sizes(
    digits_onnx: Path, tmp_path: Path, precision: str
) -> None:
    cache = tmp_path / "timing.cache"
    options = BuildOptions(
        "tensorrt",
        precision,
        shapes=("image:1x1x32x32/4x1x32x32/16x1x32x32",),
        workspace_mb=512,
        timing_cache=cache,
    )
    result = build_engine(str(digits_onnx), tmp_path / "engine", options)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["format"] == "tensorrt_plan"
    assert manifest["recipe"]["tensorrt"]["tensorrt_version"]
    assert manifest["recipe"]["tensorrt"]["gpu_name"]
    assert (result.path.parent / "builder.log").read_text().strip()
    assert cache.stat().st_size > 0
    reference = _ort(digits_onnx)
    with get_backend("tensorrt").load(str(result.path), LoadOptions()) as session:
        assert session.info["engine_device_memory_bytes"] is not None
        for batch in (1, 4, 16):
            feed = random_feed(session.inputs, {"batch": batch}, seed=batch)
            outputs = session.run(feed)
            expected = reference(feed)[0]
            actual = next(iter(outputs.values()))
            assert actual.shape == expected.shape
            assert np.abs(actual - expected).max() < TOLERANCE[precision] * max(
                1.0, float(np.abs(expected).max())
            )
            assert session.last_gpu_ms is not None and session.last_gpu_ms > 0  # type: ignore[attr-defined]


def test_timing_cache_is_reused_across_builds(digits_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    for index in range(2):
        build_engine(
            str(digits_onnx),
            tmp_path / f"engine{index}",
            BuildOptions("tensorrt", "fp32", timing_cache=cache),
        )
        size = cache.stat().st_size
        assert size > 0
    log = (tmp_path / "engine1" / "builder.log").read_text().lower()
    assert "timing cache" in log


def test_an_engine_from_another_tensorrt_is_refused(digits_onnx: Path, tmp_path: Path) -> None:
    from dlopt.artifacts import Manifest

    result = build_engine(str(digits_onnx), tmp_path, BuildOptions("tensorrt", "fp32"))
    data = json.loads(result.manifest_path.read_text())
    data["recipe"]["tensorrt"]["tensorrt_version"] = "10.12.0.1"
    manifest = Manifest(**{k: v for k, v in data.items()})
    write_manifest(result.path, manifest)
    with pytest.raises(BackendError) as caught:
        get_backend("tensorrt").load(str(result.path), LoadOptions())
    assert "10.12.0.1" in caught.value.one_line()


def test_int8_needs_qdq_onnx(digits_onnx: Path, tmp_path: Path) -> None:
    from dlopt.errors import ConfigError

    with pytest.raises(ConfigError, match="Q/DQ"):
        build_engine(str(digits_onnx), tmp_path, BuildOptions("tensorrt", "int8"))


def test_torch_tensorrt_compiles_the_torch_source(tmp_path: Path) -> None:
    pytest.importorskip("torch_tensorrt")
    result = build_engine(DIGITS, tmp_path, BuildOptions("torch-tensorrt", "fp16"), weights=WEIGHTS)
    assert result.path.is_file()
    assert json.loads(result.manifest_path.read_text())["recipe"]["backend"] == "torch-tensorrt"


def test_the_backend_builds_an_onnx_it_is_given_once_and_reuses_it(
    digits_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlopt.backends.tensorrt.engine_cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "engines"))
    backend = get_backend("tensorrt")
    reference = _ort(digits_onnx)

    with backend.load(str(digits_onnx), LoadOptions(batch_size=4)) as first:
        assert first.info["engine_cache"] == "built" and first.info["engine_build_s"] > 0
        feed = random_feed(first.inputs, {"batch": 4}, seed=4)
        actual = next(iter(first.run(feed).values()))
        expected = reference(feed)[0]
        assert np.abs(actual - expected).max() < TOLERANCE["fp32"] * max(
            1.0, float(np.abs(expected).max())
        )
    with backend.load(str(digits_onnx), LoadOptions(batch_size=4)) as second:
        assert second.info["engine_cache"] == "hit" and second.info["engine_build_s"] is None
        assert second.info["engine_path"] == first.info["engine_path"]
    with backend.load(str(digits_onnx), LoadOptions(batch_size=8)) as other_profile:
        assert other_profile.info["engine_cache"] == "built"
    manifest = json.loads(Path(first.info["engine_path"] + ".dlopt.json").read_text())
    assert manifest["precision"] == "fp32"
    assert manifest["recipe"]["engine_cache_key"]["profile"]["image"]["max"] == [4, 1, 32, 32]


def test_an_fp16_onnx_becomes_an_fp16_engine(
    digits_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlopt.backends.tensorrt.engine_cache import CACHE_ENV
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "engines"))
    fp16 = quantize_model(str(digits_onnx), tmp_path / "fp16", QuantizeOptions(mode="fp16"))

    with get_backend("tensorrt").load(str(fp16.path), LoadOptions(batch_size=2)) as session:
        manifest = json.loads(Path(session.info["engine_path"] + ".dlopt.json").read_text())
        assert manifest["precision"] == "fp16"
        feed = random_feed(session.inputs, {"batch": 2}, seed=2)
        actual = next(iter(session.run(feed).values()))
    expected = _ort(digits_onnx)(feed)[0]
    assert np.abs(actual - expected).max() < TOLERANCE["fp16"] * max(
        1.0, float(np.abs(expected).max())
    )


def test_bench_of_an_onnx_on_tensorrt_reports_the_build_apart_and_reuses_it(
    digits_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlopt.backends.tensorrt.engine_cache import CACHE_ENV
    from dlopt.harness.bench import BenchSettings, run_bench

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "engines"))  # the workers inherit it
    settings = BenchSettings(
        backends=("onnxruntime", "tensorrt"), reference=str(digits_onnx), min_time_s=0.5
    )

    first = run_bench([str(digits_onnx)], settings, tmp_path / "first").row(
        str(digits_onnx), "tensorrt"
    )
    second = run_bench([str(digits_onnx)], settings, tmp_path / "second").row(
        str(digits_onnx), "tensorrt"
    )

    assert first.status == "ok", first.reason
    assert first.build_s is not None and first.build_s > 0
    assert first.info["engine_cache"] == "built" and first.latency is not None
    assert second.status == "ok" and second.build_s is None
    assert second.info["engine_cache"] == "hit"
    assert second.load_s is not None and second.load_s < first.build_s
