"""Input specs: the name, shape (static or named dynamic axes) and dtype of each model input.

Syntax, on the command line (`--input`, repeatable) and in config files::

    NAME:DIMS[:DTYPE[:LOW..HIGH]]

DIMS are separated by `x` or `,`; each is an integer (static) or `axis=example` (a dynamic
axis with the size used for examples). DTYPE is one of float32 (default), float16, int64,
int32, bool. LOW..HIGH bounds the random example values (integers inclusive), e.g. token ids.

    image:batch=1x1x32x32
    input_ids:batch=2xseq=64:int64:0..999
    attention_mask:batch=2xseq=64:int64:1..1
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlopt.errors import InputSpecError

if TYPE_CHECKING:
    import numpy as np

DTYPES = ("float32", "float16", "int64", "int32", "bool")
_DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "f32": "float32",
    "fp16": "float16",
    "half": "float16",
    "f16": "float16",
    "long": "int64",
    "i64": "int64",
    "int": "int32",
    "i32": "int32",
}
_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_DIM = re.compile(r"(?:(?P<axis>[A-Za-z_][A-Za-z0-9_]*)=(?P<example>\d+)|(?P<static>\d+))")
_RANGE = re.compile(r"^(?P<low>-?\d+(?:\.\d+)?)\.\.(?P<high>-?\d+(?:\.\d+)?)$")
SPEC_HELP = (
    "NAME:DIMS[:DTYPE[:LOW..HIGH]], e.g. image:batch=1x3x224x224 or "
    "input_ids:batch=1xseq=64:int64:0..999 (dims: an integer, or axis=example_size for a "
    f"dynamic axis; dtypes: {', '.join(DTYPES)})"
)


@dataclass(frozen=True)
class Dim:
    """One dimension: a static size, or a named dynamic axis with an example size."""

    size: int
    axis: str | None = None

    @property
    def is_dynamic(self) -> bool:
        return self.axis is not None

    def __str__(self) -> str:
        return f"{self.axis}={self.size}" if self.axis else str(self.size)


@dataclass(frozen=True)
class TensorSpec:
    """A model input (or output): name, dims and dtype, plus the range of example values."""

    name: str
    dims: tuple[Dim, ...]
    dtype: str = "float32"
    value_range: tuple[float, float] | None = field(default=None)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(dim.size for dim in self.dims)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Index of each dynamic dimension -> its axis name."""
        return {i: dim.axis for i, dim in enumerate(self.dims) if dim.axis is not None}

    def shape_with(self, axis_sizes: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with some dynamic axes resized (others keep their example size)."""
        return tuple(
            axis_sizes.get(dim.axis, dim.size) if dim.axis else dim.size for dim in self.dims
        )

    def __str__(self) -> str:
        text = f"{self.name}:{'x'.join(str(d) for d in self.dims)}:{self.dtype}"
        if self.value_range is not None:
            low, high = self.value_range
            text += f":{_number(low)}..{_number(high)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": [dim.axis or dim.size for dim in self.dims],
            "example_shape": list(self.example_shape),
            "dtype": self.dtype,
            "value_range": list(self.value_range) if self.value_range else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        dims = tuple(
            Dim(int(example), None if isinstance(dim, int) else str(dim))
            for dim, example in zip(data["shape"], data["example_shape"], strict=True)
        )
        value_range = tuple(data["value_range"]) if data.get("value_range") else None
        return cls(str(data["name"]), dims, str(data["dtype"]), value_range)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def normalize_dtype(text: str, where: str = "") -> str:
    """`fp16` -> `float16`; raises InputSpecError for an unknown dtype."""
    dtype = _DTYPE_ALIASES.get(text.strip().lower(), text.strip().lower())
    if dtype not in DTYPES:
        raise InputSpecError(f"unknown dtype {text!r}{where}", f"use one of {', '.join(DTYPES)}")
    return dtype


def parse_input_spec(text: str) -> TensorSpec:
    """Parse `NAME:DIMS[:DTYPE[:LOW..HIGH]]` into a TensorSpec; raises InputSpecError."""
    where = f" in input spec {text!r}"
    parts = text.strip().split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise InputSpecError(f"cannot parse input spec {text!r}", f"write it as {SPEC_HELP}")
    name, dims_text = parts[0].strip(), parts[1].strip()
    if not _NAME.match(name):
        raise InputSpecError(
            f"bad input name {name!r}{where}",
            "names may use letters, digits and _ . - / (write it as NAME:DIMS[:DTYPE])",
        )
    dims = _parse_dims(dims_text, where)
    dtype = normalize_dtype(parts[2], where) if len(parts) >= 3 and parts[2] else "float32"
    value_range = _parse_range(parts[3], where) if len(parts) == 4 else None
    if value_range is not None and dtype == "bool":
        raise InputSpecError(f"a value range makes no sense for a bool input{where}")
    return TensorSpec(name, dims, dtype, value_range)


def _parse_dims(text: str, where: str) -> tuple[Dim, ...]:
    if not text:
        raise InputSpecError(f"no dimensions{where}", "a scalar input is written as NAME:1")
    dims: list[Dim] = []
    position = 0
    while True:
        match = _DIM.match(text, position)
        if match is None:
            raise InputSpecError(
                f"cannot read dimension at {text[position:]!r}{where}",
                "each dimension is an integer or axis=example_size, separated by x "
                "(e.g. batch=1x3x224x224)",
            )
        if match.group("static") is not None:
            size, axis = int(match.group("static")), None
        else:
            size, axis = int(match.group("example")), match.group("axis")
        if size < 1:
            raise InputSpecError(f"dimension {match.group(0)!r} must be at least 1{where}")
        dims.append(Dim(size, axis))
        position = match.end()
        if position == len(text):
            break
        if text[position] not in "x,":
            raise InputSpecError(
                f"unexpected {text[position]!r} after dimension {match.group(0)!r}{where}",
                "separate dimensions with x, e.g. batch=1x3x224x224",
            )
        position += 1
    axes = [dim.axis for dim in dims if dim.axis]
    if len(axes) != len(set(axes)):
        raise InputSpecError(f"an axis name is used twice{where}", "name each dynamic axis once")
    return tuple(dims)


def _parse_range(text: str, where: str) -> tuple[float, float]:
    match = _RANGE.match(text.strip())
    if match is None:
        raise InputSpecError(f"cannot read value range {text!r}{where}", "write it as LOW..HIGH")
    low, high = float(match.group("low")), float(match.group("high"))
    if low > high:
        raise InputSpecError(f"value range {text!r} has LOW > HIGH{where}")
    return low, high


def parse_input_specs(texts: Iterable[str]) -> list[TensorSpec]:
    """Parse several specs and check that names are unique and shared axes agree."""
    specs = [parse_input_spec(text) for text in texts]
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise InputSpecError(f"input {name!r} is given twice", "give each input once")
    check_axes_agree(specs)
    return specs


def check_axes_agree(specs: Sequence[TensorSpec]) -> None:
    """A dynamic axis shared by several inputs (e.g. `batch`) must have one example size."""
    sizes: dict[str, tuple[int, str]] = {}
    for spec in specs:
        for dim in spec.dims:
            if dim.axis is None:
                continue
            seen = sizes.setdefault(dim.axis, (dim.size, spec.name))
            if seen[0] != dim.size:
                raise InputSpecError(
                    f"axis {dim.axis!r} is {seen[0]} in input {seen[1]!r} but {dim.size} in "
                    f"input {spec.name!r}",
                    "a shared dynamic axis needs the same example size in every input",
                )


def axis_names(specs: Sequence[TensorSpec]) -> list[str]:
    """Every dynamic axis name, in order of first appearance."""
    names: list[str] = []
    for spec in specs:
        for dim in spec.dims:
            if dim.axis and dim.axis not in names:
                names.append(dim.axis)
    return names


def random_feed(
    specs: Sequence[TensorSpec],
    axis_sizes: Mapping[str, int] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Random, non-zero example inputs for the specs (dynamic axes resized as asked).

    Floats are standard normal; integers are uniform in the spec's range (default 0..9);
    bools are fair coins.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = spec.shape_with(axis_sizes or {})
        if spec.dtype in ("float32", "float16"):
            if spec.value_range is None:
                values = rng.standard_normal(shape)
            else:
                values = rng.uniform(spec.value_range[0], spec.value_range[1], shape)
            feed[spec.name] = values.astype(spec.dtype)
        elif spec.dtype == "bool":
            feed[spec.name] = rng.random(shape) < 0.5
        else:
            low, high = spec.value_range or (0, 9)
            feed[spec.name] = rng.integers(int(low), int(high) + 1, shape).astype(spec.dtype)
    return feed


def spec_from_graph(name: str, dims: Sequence[object], dtype: str) -> TensorSpec:
    """An input spec read from a model's graph (ONNX, ONNX Runtime or OpenVINO ports).

    `dims` are what the runtime reports per axis: a positive int is static; anything else is a
    dynamic axis, named after the runtime's symbol when it is an identifier (`batch`, `seq`),
    else `batch` for axis 0 and `<input>_dim<i>` after it. Example sizes are 1. The one rule
    for every reader, so that the same graph gives the same specs whichever runtime read it.
    """
    result = []
    for index, dim in enumerate(dims):
        if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
            result.append(Dim(dim))
            continue
        symbol = "".join(c if c.isalnum() or c == "_" else "_" for c in str(dim or ""))
        if not symbol or not (symbol[0].isalpha() or symbol[0] == "_"):
            symbol = "batch" if index == 0 else f"{name}_dim{index}"
        result.append(Dim(1, symbol))
    return TensorSpec(name, tuple(result), dtype)
