"""`dlopt bench --eval-shards N`: the evaluation set in index ranges, one worker per (pair,
range), outputs streamed to disk; drift and metrics merged equal one pass on the same samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.harness.evaluation_stats import SHARD_ALIGN
from tests.integration.test_bench import _export

pytestmark = pytest.mark.integration
SAMPLES = 2 * SHARD_ALIGN + 808


def test_sharded_evaluation_equals_one_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = tmp_path / "eval.npz"
    np.savez(
        data,
        x=rng.standard_normal((SAMPLES, 8)).astype(np.float32),
        labels=rng.integers(0, 4, SAMPLES),
    )
    fp32 = _export("small_classifier", tmp_path / "fp32.onnx")
    perturbed = _export("perturbed_classifier", tmp_path / "perturbed.onnx")
    reports = {}
    for shards in (1, 3):
        path = tmp_path / f"bench-{shards}.json"
        args = [
            "bench", fp32, perturbed, "--reference", fp32, "-b", "onnxruntime", "-b", "openvino",
            "--data", str(data), "--batch-size", "16", "--iterations", "15", "--threads", "1",
            "--eval-shards", str(shards), "--json", str(path),
            "-o", str(tmp_path / f"run-{shards}"),
        ]  # fmt: skip

        result = CliRunner().invoke(app, args)

        assert result.exit_code == 0, result.output
        reports[shards] = json.loads(path.read_text())["rows"]
    for one, sharded in zip(reports[1], reports[3], strict=True):
        assert sharded["status"] == one["status"] == "ok", sharded["reason"]
        assert sharded["samples"] == one["samples"] == SAMPLES
        assert sharded["drift"] == one["drift"]
        assert sharded["metrics"] == one["metrics"]
        assert len(json.loads(Path(sharded["outputs_file"]).read_text())["parts"]) == 3
        assert sharded["memory"]["peak_rss_bytes"] > 0
    perturbed_row = next(row for row in reports[3] if row["model"] == perturbed)
    assert perturbed_row["drift"]["output"]["max_abs_error"] > 1e-2
    assert perturbed_row["metrics"]["accuracy"]["reference"] is not None
