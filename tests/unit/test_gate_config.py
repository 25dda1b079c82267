"""The gate config loader: valid configs load; every error names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlopt.errors import ConfigError
from dlopt.gate.config import load_gate_config

VALID = """
[model]
source = "model.py:create_model"
weights = "weights.pt"
inputs = ["image:batch=1x1x32x32"]

[data]
evaluation = "data.py:evaluation"
calibration = "data.py:calibration"
task = "classification"

[[variants]]
name = "int8-static"
quantize = { mode = "static", method = "minmax", target = "onnxruntime" }

[[variants]]
name = "pruned"
prune = { method = "structured", amount = 0.3 }

[bench]
backends = ["onnxruntime", "openvino", "tensorrt"]
optional_backends = ["tensorrt"]
threads = 2

[gate]
accuracy_drop_max = 0.01
cosine_min = 0.99
speedup_min = 1.5

[gate.variants.pruned]
speedup_min = 1.2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dlopt.toml"
    path.write_text(text)
    return path


def test_valid_config_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    config = load_gate_config(write(tmp_path, VALID))

    assert config.model.source == f"{tmp_path}/model.py:create_model"
    assert config.model.weights == str(tmp_path / "weights.pt")
    assert config.data.evaluation == f"{tmp_path}/data.py:evaluation"
    assert [v.name for v in config.variants] == ["int8-static", "pruned"]
    assert config.variants[0].kind == "quantize" and config.variants[0].recipe["mode"] == "static"
    assert config.thresholds_for("pruned").speedup_min == 1.2
    assert config.thresholds_for("pruned").cosine_min == 0.99
    assert config.thresholds_for("int8-static").speedup_min == 1.5


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (('task = "classification"', 'task = "ranking"'), "data.task = 'ranking' is not allowed"),
        (("cosine_min = 0.99", "cosine_min = 99"), "gate.cosine_min = 99 is out of range"),
        (
            ("cosine_min = 0.99", 'cosine_min = "high"'),
            "gate.cosine_min = 'high' has the wrong type",
        ),
        (("cosine_min = 0.99", "cosine_max = 0.99"), "unknown key gate.cosine_max"),
        (("threads = 2", "threads = 0"), "bench.threads = 0 is out of range"),
        (("threads = 2", "threads = 1.5"), "bench.threads = 1.5 is not an integer"),
        (("threads = 2", "threads = 1.0"), "bench.threads = 1.0 is not an integer"),
        (("threads = 2", "batch_size = 2.0"), "bench.batch_size = 2.0 is not an integer"),
        (("threads = 2", "max_iterations = 5.0"), "bench.max_iterations = 5.0 is not an"),
        (
            ('task = "classification"', "calibration_limit = 64.0"),
            "data.calibration_limit = 64.0 is not an integer",
        ),
        (
            ('task = "classification"', "evaluation_limit = 1e2"),
            "data.evaluation_limit = 100.0 is not an integer",
        ),
        (('name = "pruned"', 'name = "fp32"'), "variant name 'fp32' is reserved"),
        (('name = "pruned"', 'name = "FP32"'), "variant name 'FP32' is reserved"),
        (('name = "pruned"', 'name = "INT8-static"'), "differ only in case"),
        (('name = "pruned"', 'name = "pruned."'), "ends with a dot"),
        (('name = "pruned"', 'name = "con"'), "device name on Windows"),
        (('name = "pruned"', 'name = "NUL.onnx"'), "device name on Windows"),
        (('name = "pruned"', 'name = ".."'), "is not a valid name"),
        (('name = "pruned"', 'name = "../x"'), "is not a valid name"),
        (('name = "pruned"', 'name = "a/b"'), "is not a valid name"),
        (('name = "pruned"', 'name = "a\\\\b"'), "is not a valid name"),
        (
            ("[gate.variants.pruned]", "[gate.variants.prunned]"),
            "[gate.variants.prunned] names no variant",
        ),
        (('name = "pruned"', 'name = "int8-static"'), "used twice"),
        (("prune = {", 'quantize = { mode = "dynamic" }\nprune = {'), "has 2 recipes"),
        (
            ('optional_backends = ["tensorrt"]', 'optional_backends = ["tpu"]'),
            "not in bench.backends",
        ),
        (("[model]", "[modle]"), "unknown key modle"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, edit: tuple[str, str], fragment: str) -> None:
    text = VALID.replace(*edit, 1)

    with pytest.raises(ConfigError) as caught:
        load_gate_config(write(tmp_path, text))

    assert fragment in caught.value.one_line()


def test_a_float_in_a_recipe_integer_key_names_the_variant_and_key(tmp_path: Path) -> None:
    from dlopt.gate.recipes import check_recipe

    text = VALID.replace("amount = 0.3", "amount = 0.3, threads = 1.0")
    config = load_gate_config(write(tmp_path, text))

    with pytest.raises(ConfigError) as caught:
        check_recipe(config.variants[1], config)

    assert "variant 'pruned': prune.threads = 1.0 is not an integer" in caught.value.one_line()


def test_data_keys_are_the_recipes_defaults_and_reach_the_bench(tmp_path: Path) -> None:
    from dlopt.gate.recipes import _options

    text = VALID.replace('task = "classification"', 'task = "regression"\ncalibration_limit = 64')
    text = text.replace("amount = 0.3", 'amount = 0.3, finetune = "data.py:training"')
    text += '\n[[variants]]\nname = "ov"\nbuild = { backend = "openvino", precision = "int8" }\n'
    text += '\n[[variants]]\nname = "own"\nquantize = { calibration_size = 8 }\n'
    config = load_gate_config(write(tmp_path, text))
    by_name = {variant.name: variant for variant in config.variants}

    assert _options(by_name["int8-static"], config).calibration_size == 64
    assert _options(by_name["ov"], config).calibration_size == 64
    assert _options(by_name["own"], config).calibration_size == 8
    assert _options(by_name["pruned"], config).task == "regression"
    # A quantize recipe that names no mode is --mode auto, calibrated on [data].calibration.
    own = _options(by_name["own"], config)
    assert own.mode == "auto" and own.calibration.endswith("data.py:calibration")


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_gate_config(write(tmp_path, "[model\nsource = 1"))
    with pytest.raises(ConfigError, match="is missing"):
        load_gate_config(tmp_path / "nope.toml")


@given(
    st.dictionaries(
        st.sampled_from(["model", "data", "bench", "gate", "x"]),
        st.one_of(
            st.integers(),
            st.text(max_size=5),
            st.dictionaries(
                st.text(max_size=8),
                st.one_of(st.integers(), st.floats(), st.text(max_size=5)),
                max_size=3,
            ),
        ),
        max_size=4,
    )
)
def test_loader_only_ever_raises_config_error(raw: dict) -> None:
    from dlopt.gate.config import parse_gate_config

    try:
        config = parse_gate_config(raw, Path("/tmp/dlopt.toml"))
    except ConfigError as error:
        assert error.one_line()
    else:
        assert config.model.source
