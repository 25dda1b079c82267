"""Shape ranges for engines: min/opt/max per input, from the input specs and `--shapes`.

Syntax of `--shapes` (repeatable, one input each)::

    NAME:MIN/OPT/MAX     image:1x1x32x32/8x1x32x32/32x1x32x32   (a range: a TensorRT profile,
                                                                 bounded dims in OpenVINO)
    NAME:SHAPE           image:1x1x32x32                       (static: min = opt = max)

Inputs without `--shapes` get a range from their spec: static dims stay; a dynamic dim runs
from `DYNAMIC_MIN` to its example size (opt), and up to `BATCH_MAX` when it is the leading
(batch) axis. Other dynamic axes (e.g. sequence length) stop at their example size, since only
the user knows how far the model goes; widen them with `--shapes`.
Pure logic: no runtime is imported here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dlopt.errors import InputSpecError
from dlopt.specs import TensorSpec

DYNAMIC_MIN = 1
BATCH_MAX = 32
# TensorRT refuses tensors of 2**31 elements or more; no CPU run of such an input fits memory.
MAX_ELEMENTS = 2**31 - 1
SHAPES_HELP = (
    "NAME:MIN/OPT/MAX with shapes written like 1x3x224x224 "
    "(e.g. image:1x1x32x32/8x1x32x32/32x1x32x32), or NAME:SHAPE for a static shape"
)
_SHAPE = re.compile(r"^\d+(?:[x,]\d+)*$")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    """The shapes one input may take: TensorRT optimizes for `opt` and accepts min..max."""

    min: Shape
    opt: Shape
    max: Shape

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def __str__(self) -> str:
        parts = [_text(self.min)] if self.is_static else map(_text, (self.min, self.opt, self.max))
        return "/".join(parts)


def _text(shape: Shape) -> str:
    return "x".join(map(str, shape))


def parse_shape_ranges(texts: Iterable[str]) -> dict[str, ShapeRange]:
    """Parse `--shapes` values; raises InputSpecError naming the bad text."""
    ranges: dict[str, ShapeRange] = {}
    for text in texts:
        name, sep, body = text.strip().rpartition(":")
        if not sep or not name:
            raise InputSpecError(f"cannot parse --shapes {text!r}", f"write it as {SHAPES_HELP}")
        parts = body.split("/")
        if len(parts) not in (1, 3) or not all(_SHAPE.match(part) for part in parts):
            raise InputSpecError(f"cannot parse --shapes {text!r}", f"write it as {SHAPES_HELP}")
        shapes = [tuple(int(d) for d in re.split("[x,]", part)) for part in parts]
        if len(shapes) == 1:
            shapes = shapes * 3
        low, opt, high = shapes
        if not len(low) == len(opt) == len(high):
            raise InputSpecError(f"--shapes {text!r}: MIN, OPT and MAX have different ranks")
        if any(d < 1 for d in low) or not all(
            a <= b <= c for a, b, c in zip(low, opt, high, strict=True)
        ):
            raise InputSpecError(
                f"--shapes {text!r}: every dim needs 1 <= MIN <= OPT <= MAX",
                f"write it as {SHAPES_HELP}",
            )
        if math.prod(high) > MAX_ELEMENTS:
            raise InputSpecError(
                f"--shapes {text!r}: the largest shape has {math.prod(high):.3g} elements",
                f"engines take at most {MAX_ELEMENTS} (2**31 - 1) elements per input",
            )
        if name in ranges:
            raise InputSpecError(f"--shapes gives input {name!r} twice", "give each input once")
        ranges[name] = ShapeRange(low, opt, high)
    return ranges


def resolve_shape_ranges(
    specs: Sequence[TensorSpec], overrides: Mapping[str, ShapeRange] | None = None
) -> dict[str, ShapeRange]:
    """One ShapeRange per input: `overrides` where given, else the default from the spec.

    Raises InputSpecError when an override names an unknown input, has the wrong rank, changes
    a static dim, or disagrees with another input on a shared dynamic axis (e.g. `batch`).
    """
    overrides = dict(overrides or {})
    names = [spec.name for spec in specs]
    unknown = [name for name in overrides if name not in names]
    if unknown:
        raise InputSpecError(
            f"--shapes names {unknown} but the model's inputs are {names}",
            "use the model's input names",
        )
    ranges: dict[str, ShapeRange] = {}
    for spec in specs:
        given = overrides.get(spec.name)
        ranges[spec.name] = _checked(spec, given) if given else default_shape_range(spec)
    _check_shared_axes(specs, ranges)
    return ranges


def default_shape_range(spec: TensorSpec) -> ShapeRange:
    """Static dims fixed; dynamic dims DYNAMIC_MIN..example, the batch axis up to BATCH_MAX."""
    low, opt, high = [], [], []
    for index, dim in enumerate(spec.dims):
        if dim.axis is None:
            low.append(dim.size)
            opt.append(dim.size)
            high.append(dim.size)
            continue
        low.append(min(DYNAMIC_MIN, dim.size))
        opt.append(dim.size)
        high.append(max(dim.size, BATCH_MAX) if index == 0 else dim.size)
    return ShapeRange(tuple(low), tuple(opt), tuple(high))


def _checked(spec: TensorSpec, given: ShapeRange) -> ShapeRange:
    if len(given.opt) != len(spec.dims):
        raise InputSpecError(
            f"--shapes for {spec.name!r} has rank {len(given.opt)} but the input has rank "
            f"{len(spec.dims)} ({spec})"
        )
    for index, dim in enumerate(spec.dims):
        sizes = {given.min[index], given.opt[index], given.max[index]}
        if dim.axis is None and sizes != {dim.size}:
            raise InputSpecError(
                f"--shapes for {spec.name!r} changes static dim {index} (size {dim.size}) to "
                f"{sorted(sizes)}",
                "only dynamic axes can take other sizes; re-export with that axis dynamic",
            )
    return given


def _check_shared_axes(specs: Sequence[TensorSpec], ranges: Mapping[str, ShapeRange]) -> None:
    seen: dict[str, tuple[tuple[int, int, int], str]] = {}
    for spec in specs:
        shape_range = ranges[spec.name]
        for index, dim in enumerate(spec.dims):
            if dim.axis is None:
                continue
            sizes = (shape_range.min[index], shape_range.opt[index], shape_range.max[index])
            first = seen.setdefault(dim.axis, (sizes, spec.name))
            if first[0] != sizes:
                raise InputSpecError(
                    f"axis {dim.axis!r} ranges over {'/'.join(map(str, first[0]))} in "
                    f"{first[1]!r} but {'/'.join(map(str, sizes))} in {spec.name!r}",
                    "give a shared dynamic axis the same MIN/OPT/MAX in every --shapes",
                )
