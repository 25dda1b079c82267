"""Input-spec parsing: the syntax in the README, its errors, and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlopt.errors import InputSpecError
from dlopt.specs import (
    DTYPES,
    Dim,
    TensorSpec,
    parse_input_spec,
    parse_input_specs,
    random_feed,
    spec_from_graph,
)


def test_static_and_dynamic_dims_with_default_dtype() -> None:
    spec = parse_input_spec("image:batch=1x3x224x224")

    assert spec.name == "image"
    assert spec.dims == (Dim(1, "batch"), Dim(3), Dim(224), Dim(224))
    assert spec.dtype == "float32"
    assert spec.dynamic_axes == {0: "batch"}
    assert spec.example_shape == (1, 3, 224, 224)


def test_int64_with_value_range_and_comma_separators() -> None:
    spec = parse_input_spec("input_ids:batch=2,seq=64:int64:0..999")

    assert spec.example_shape == (2, 64)
    assert spec.dynamic_axes == {0: "batch", 1: "seq"}
    assert spec.dtype == "int64"
    assert spec.value_range == (0.0, 999.0)


def test_axis_names_containing_x_parse() -> None:
    spec = parse_input_spec("tokens:xlen=4x8:int32")

    assert spec.dims == (Dim(4, "xlen"), Dim(8))


def test_dtype_aliases() -> None:
    assert parse_input_spec("a:1:fp16").dtype == "float16"
    assert parse_input_spec("a:1:long").dtype == "int64"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("image", "cannot parse input spec"),
        ("image:1x3:float8", "unknown dtype 'float8'"),
        ("image:1xq", "cannot read dimension at 'q'"),
        ("image:0x3", "must be at least 1"),
        ("image:batch=1xbatch=2", "axis name is used twice"),
        ("im age:1", "bad input name"),
        ("ids:1x4:int64:9..1", "LOW > HIGH"),
        ("ids:1x4:int64:a..b", "cannot read value range"),
        ("mask:1x4:bool:0..1", "bool input"),
        ("image:", "no dimensions"),
    ],
)
def test_bad_specs_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InputSpecError) as caught:
        parse_input_spec(text)

    assert fragment in caught.value.one_line()
    assert "\n" not in caught.value.one_line()


def test_duplicate_names_and_disagreeing_shared_axes_are_refused() -> None:
    with pytest.raises(InputSpecError, match="given twice"):
        parse_input_specs(["a:1", "a:2"])
    with pytest.raises(InputSpecError, match="axis 'batch' is 1"):
        parse_input_specs(["a:batch=1x4", "b:batch=2x4"])


def test_random_feed_is_non_zero_in_range_and_resizes_axes() -> None:
    specs = parse_input_specs(
        ["ids:batch=2xseq=8:int64:5..7", "mask:batch=2xseq=8:int64:1..1", "x:batch=2x3"]
    )

    feed = random_feed(specs, {"seq": 5}, seed=3)

    assert feed["ids"].shape == (2, 5) and feed["ids"].dtype == np.int64
    assert feed["ids"].min() >= 5 and feed["ids"].max() <= 7
    assert (feed["mask"] == 1).all()
    assert feed["x"].shape == (2, 3) and np.count_nonzero(feed["x"]) == feed["x"].size
    assert np.array_equal(random_feed(specs, seed=3)["x"], random_feed(specs, seed=3)["x"])


_axis = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
_dim = st.one_of(
    st.integers(1, 4096).map(lambda size: Dim(size)),
    st.tuples(_axis, st.integers(1, 512)).map(lambda pair: Dim(pair[1], pair[0])),
)


@given(
    name=st.from_regex(r"[A-Za-z0-9_.]{1,12}", fullmatch=True),
    dims=st.lists(_dim, min_size=1, max_size=5, unique_by=lambda d: d.axis or id(d)),
    dtype=st.sampled_from(DTYPES),
)
def test_spec_text_round_trips(name: str, dims: list[Dim], dtype: str) -> None:
    spec = TensorSpec(name, tuple(dims), dtype)

    assert parse_input_spec(str(spec)) == spec
    assert TensorSpec.from_dict(spec.to_dict()) == spec


@given(st.text(max_size=40))
def test_parser_never_raises_anything_but_input_spec_error(text: str) -> None:
    try:
        spec = parse_input_spec(text)
    except InputSpecError as error:
        assert error.one_line()
    else:
        assert spec.name and spec.dims


def test_one_rule_names_the_dynamic_axes_of_every_graph_reader() -> None:
    spec = spec_from_graph("tokens", [0, "seq len", 7, None, "s0"], "int64")

    assert [(dim.size, dim.axis) for dim in spec.dims] == [
        (1, "batch"),
        (1, "seq_len"),
        (7, None),
        (1, "tokens_dim3"),
        (1, "s0"),
    ]
    assert spec.dtype == "int64"
