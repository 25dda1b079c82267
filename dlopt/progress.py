"""Progress of long steps (calibration, NNCF, sensitivity ranking, drift, timing), reported to
whatever shows it: the CLI's bars on a terminal (dlopt/commands/_progress.py), nothing
otherwise. Never written to stdout, so never into a JSON output.

The library code says `with progress.step("calibrating", total=300) as advance: ...
advance(8)`; a command installs a sink with `progress.reporting(sink)`. A context variable
rather than a parameter threaded through every function: the steps sit deep inside quantize
and the gate, and without a sink they cost nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol

Advance = Callable[..., None]


class ProgressSink(Protocol):
    def start(self, description: str, total: int | None) -> Any: ...

    def advance(self, task: Any, amount: float) -> None: ...

    def finish(self, task: Any) -> None: ...


_SINK: contextvars.ContextVar[ProgressSink | None] = contextvars.ContextVar(
    "dlopt_progress_sink", default=None
)


@contextlib.contextmanager
def reporting(sink: ProgressSink | None) -> Iterator[None]:
    """Report every step started inside this block to `sink` (None: to nothing)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


@contextlib.contextmanager
def step(description: str, total: int | None = None) -> Iterator[Advance]:
    """A long step of `total` units (samples, nodes, rounds); yields `advance(amount=1)`."""
    sink = _SINK.get()
    if sink is None:
        yield _nothing
        return
    task = sink.start(description, total)

    def advance(amount: float = 1) -> None:
        sink.advance(task, amount)

    try:
        yield advance
    finally:
        sink.finish(task)


def _nothing(amount: float = 1) -> None:
    return None
