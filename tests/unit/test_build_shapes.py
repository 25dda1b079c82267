"""Shape ranges for engine builds: parsing `--shapes` and defaults from the input specs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlopt.errors import InputSpecError
from dlopt.optimize.build.shape_profiles import (
    BATCH_MAX,
    ShapeRange,
    default_shape_range,
    parse_shape_ranges,
    resolve_shape_ranges,
)
from dlopt.specs import Dim, TensorSpec, parse_input_specs

TEXT = parse_input_specs(
    ["input_ids:batch=2xseq=64:int64:0..99", "attention_mask:batch=2xseq=64:int64:1..1"]
)


def test_parse_a_range_and_a_static_shape() -> None:
    ranges = parse_shape_ranges(["image:1x1x32x32/8x1x32x32/32x1x32x32", "mask:4,16"])
    assert ranges["image"] == ShapeRange((1, 1, 32, 32), (8, 1, 32, 32), (32, 1, 32, 32))
    assert ranges["mask"].is_static and ranges["mask"].opt == (4, 16)
    assert str(ranges["image"]) == "1x1x32x32/8x1x32x32/32x1x32x32"


@pytest.mark.parametrize(
    "text",
    ["image", "image:1x2/3x4", "image:8x1/4x1/16x1", "image:1x2/1x2x3/1x2", "image:0x4", ":1x2"],
)
def test_bad_shapes_are_refused(text: str) -> None:
    with pytest.raises(InputSpecError):
        parse_shape_ranges([text])


def test_default_range_widens_the_batch_axis_only() -> None:
    ranges = resolve_shape_ranges(TEXT)
    assert ranges["input_ids"] == ShapeRange((1, 1), (2, 64), (BATCH_MAX, 64))
    image = parse_input_specs(["image:batch=1x1x32x32"])[0]
    assert default_shape_range(image) == ShapeRange((1, 1, 32, 32), (1, 1, 32, 32), (32, 1, 32, 32))


def test_overrides_must_agree_on_shared_axes() -> None:
    with pytest.raises(InputSpecError, match="axis 'seq'"):
        resolve_shape_ranges(TEXT, parse_shape_ranges(["input_ids:1x16/2x64/32x128"]))
    both = parse_shape_ranges(["input_ids:1x16/2x64/8x128", "attention_mask:1x16/2x64/8x128"])
    assert resolve_shape_ranges(TEXT, both)["attention_mask"].max == (8, 128)


def test_overrides_cannot_change_static_dims_or_name_unknown_inputs() -> None:
    image = parse_input_specs(["image:batch=1x1x32x32"])
    with pytest.raises(InputSpecError, match="static dim 2"):
        resolve_shape_ranges(image, parse_shape_ranges(["image:1x1x64x64"]))
    with pytest.raises(InputSpecError, match="rank"):
        resolve_shape_ranges(image, parse_shape_ranges(["image:1x32x32"]))
    with pytest.raises(InputSpecError, match="'pixels'"):
        resolve_shape_ranges(image, parse_shape_ranges(["pixels:1x1x32x32"]))


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 300)), min_size=1, max_size=5))
def test_default_range_always_holds_the_example_shape(dims: list[tuple[bool, int]]) -> None:
    spec = TensorSpec(
        "x",
        tuple(Dim(size, f"a{i}" if dynamic else None) for i, (dynamic, size) in enumerate(dims)),
    )
    shape_range = default_shape_range(spec)
    assert shape_range.opt == spec.example_shape
    assert all(
        a <= b <= c
        for a, b, c in zip(shape_range.min, shape_range.opt, shape_range.max, strict=True)
    )
    for index, dim in enumerate(spec.dims):
        if dim.axis is None:
            assert shape_range.min[index] == shape_range.max[index] == dim.size
