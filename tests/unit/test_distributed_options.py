"""Targets, tracking and shards in the config and on the command line; missing extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from dlopt.cli import with_optional_values
from dlopt.errors import ConfigError
from dlopt.gate.config import load_gate_config
from dlopt.gate.schema import config_json_schema
from dlopt.gate.shards import parse_shard
from dlopt.harness.executors import make_executor
from dlopt.harness.executors.targets import Target, target_for
from dlopt.report.tracking import resolve_uri

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG = """
[model]
source = "model.py:create_model"

[bench]
backends = ["onnxruntime", "openvino", "tensorrt"]
optional_backends = ["tensorrt"]
eval_shards = 4

[[targets]]
name = "gpu-h100"
resources = { GPU = 1, CPU = 4 }
backends = ["tensorrt"]

[[targets]]
name = "avx512"
resources = { avx512 = 1 }
backends = ["openvino"]

[tracking]
mlflow = "sqlite:///runs/mlflow.db"
experiment = "digits"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dlopt.toml"
    path.write_text(text)
    return path


def test_targets_tracking_and_eval_shards_load_and_fit_the_schema(tmp_path: Path) -> None:
    config = load_gate_config(write(tmp_path, CONFIG))

    jsonschema.validate(tomllib.loads(CONFIG), config_json_schema())
    assert [target.name for target in config.targets] == ["gpu-h100", "avx512"]
    assert config.bench.eval_shards == 4 and config.tracking.experiment == "digits"
    gpu = target_for("tensorrt", config.targets)
    assert gpu.ray_options(1.0) == {"num_cpus": 4.0, "num_gpus": 1.0}
    assert target_for("openvino", config.targets).ray_options(1.0) == {
        "num_cpus": 1.0,
        "resources": {"avx512": 1.0},
    }
    default = target_for("onnxruntime", config.targets)
    assert default.name == "default" and default.needs(1.0) == {"CPU": 1.0}
    assert target_for("tensorrt", ()).needs(1.0) == {"CPU": 1.0, "GPU": 1.0}  # needs a GPU


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (("GPU = 1, CPU = 4", "GPU = 0"), "targets.gpu-h100.resources.GPU = 0 is out of range"),
        (("GPU = 1, CPU = 4", 'GPU = "one"'), "resources.GPU = 'one' is out of range"),
        (('backends = ["openvino"]', 'backends = ["tensorrt"]'), "is in targets 'gpu-h100' and"),
        (('backends = ["openvino"]', 'backends = ["torch"]'), "not in bench.backends"),
        (('backends = ["openvino"]', "backends = []"), "is not a list of backend names"),
        (('name = "avx512"', 'name = "gpu-h100"'), "used twice"),
        (('name = "avx512"', 'name = "a b"'), "is not a valid name"),
        (('name = "avx512"', 'name = "default"'), "reserved"),
        (('name = "avx512"\n', ""), "targets[1] has no name"),
        (("{ avx512 = 1 }", '"avx512"'), "resources = 'avx512' is not a table"),
        (("resources = { avx512 = 1 }", "resource = { avx512 = 1 }"), "unknown key targets[1]."),
        (("eval_shards = 4", "eval_shards = 0"), "bench.eval_shards = 0 is out of range"),
        (('experiment = "digits"', 'experiment = " "'), "tracking.experiment is empty"),
        (('experiment = "digits"', "server = 1"), "unknown key tracking.server"),
    ],
)
def test_bad_targets_and_tracking_name_the_key(
    tmp_path: Path, edit: tuple[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_gate_config(write(tmp_path, CONFIG.replace(*edit, 1)))

    assert fragment in caught.value.one_line()


def test_shards_split_the_variants_evenly_and_every_one_once() -> None:
    variants = [f"v{index}" for index in range(10)]
    shards = [parse_shard(f"{index}/4") for index in range(1, 5)]

    picked = [shard.pick(variants) for shard in shards]
    assert sorted(name for share in picked for name in share) == sorted(variants)
    assert [len(share) for share in picked] == [3, 3, 2, 2]
    assert shards[1].pick(variants) == picked[1]  # deterministic
    for text in ("0/4", "5/4", "2", "a/b", "2/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(text)


def test_mlflow_without_a_value_takes_the_default() -> None:
    assert with_optional_values(["gate", "c.toml", "--mlflow"]) == [
        "gate",
        "c.toml",
        "--mlflow",
        "default",
    ]
    assert with_optional_values(["gate", "c.toml", "--mlflow", "-o", "x"])[3] == "default"
    assert with_optional_values(["gate", "c.toml", "--mlflow", "http://h:5000"])[3] == (
        "http://h:5000"
    )


def test_tracking_uris_resolve_beside_the_reports_or_the_config(tmp_path: Path) -> None:
    reports, base = tmp_path / "reports", tmp_path / "project"

    assert resolve_uri("default", reports, base) == f"sqlite:///{reports.resolve()}/mlflow.db"
    assert resolve_uri("sqlite:///runs/m.db", reports, base) == (
        f"sqlite:///{base.resolve()}/runs/m.db"
    )
    assert resolve_uri("sqlite:////abs/m.db", reports, base) == "sqlite:////abs/m.db"
    assert resolve_uri("http://mlflow:5000", reports, base) == "http://mlflow:5000"


def test_executor_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="apply to --executor ray only"):
        make_executor("local", address="head:6379")
    with pytest.raises(ConfigError, match="out of range"):
        Target("gpu", {"GPU": -1}, ("tensorrt",))


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        ("ray", ["gate", "CONFIG", "--executor", "ray"], "dlopt[ray]"),
        ("mlflow", ["gate", "CONFIG", "--mlflow"], "dlopt[mlflow]"),
        ("ray", ["bench", "m.onnx", "--executor", "ray"], "dlopt[ray]"),
    ],
)
def test_a_missing_extra_is_one_line_and_exit_2(
    tmp_path: Path, blocked: str, args: list[str], extra: str, repo_root: Path
) -> None:
    config = repo_root / "models" / "digits_cnn" / "dlopt.toml"
    argv = [str(config) if arg == "CONFIG" else arg for arg in args]
    # `sys.modules[name] = None` makes `import name` fail as if it were not installed.
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"sys.argv = ['dlopt', *{argv!r}, '-o', {str(tmp_path / 'out')!r}]\n"
        "from dlopt.cli import main; main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )

    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and extra in lines[0], result.stderr
    assert not (tmp_path / "out" / "report.json").exists()
