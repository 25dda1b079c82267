"""The CLI's progress display: a status line and one bar per long step (samples done, time
left), on stderr and only on a terminal; piped or in CI it prints nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from dlopt import progress


class _RichSink:
    def __init__(self, bars: Any) -> None:
        self.bars = bars

    def start(self, description: str, total: int | None) -> Any:
        return self.bars.add_task(description, total=total)

    def advance(self, task: Any, amount: float) -> None:
        self.bars.advance(task, amount)

    def finish(self, task: Any) -> None:
        self.bars.remove_task(task)


@contextlib.contextmanager
def progress_display(first_status: str) -> Iterator[Callable[[str], None]]:
    """Yields `say(message)` for the status line; installs bars for `dlopt.progress` steps."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        with progress.reporting(None):
            yield lambda message: None
        return
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    status = bars.add_task(first_status, total=None)

    def say(message: str) -> None:
        bars.update(status, description=message)

    with bars, progress.reporting(_RichSink(bars)):
        yield say
