"""Calibration data for the quantizers: dlopt data sources adapted to ONNX Runtime's
`CalibrationDataReader` and to `nncf.Dataset`, streamed batch by batch."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlopt import progress
from dlopt.data import Batch, DataSource, open_data
from dlopt.errors import DataError
from dlopt.specs import TensorSpec

# Batches fed to ORT's calibrator: one sample. ORT reduces each tensor to its min and max in
# the graph, so a bigger batch saves only session calls, while the arena grows with the batch:
# ResNet-50 at 224 x 224, 100 samples, peak RSS 3.32 GB with batch 8 and 1.62 GB with batch 1,
# and 11.3 s instead of 11.9 s (benchmarks/quantize_time.py's `dlopt static`).
ORT_CALIBRATION_BATCH = 1
# Too few samples give scales that describe noise, not the data.
MIN_CALIBRATION_SAMPLES = 8


@dataclass(frozen=True)
class Calibration:
    """The calibration stream with what one checking pass found: its samples and sha256."""

    data: DataSource
    samples: int
    sha256: str


def open_calibration(
    source: str | None,
    specs: Sequence[TensorSpec],
    samples: int,
    seed: int,
    batch_size: int = ORT_CALIBRATION_BATCH,
) -> Calibration:
    """The calibration stream, checked once (names, shapes, dtypes, NaN, enough samples) in
    the same pass that hashes it for the manifest.

    Raises DataError, one line, naming the source and the fix.
    """
    data = open_data(source, specs, batch_size, samples, seed)
    count, sha256 = data.count_and_sha256()
    needed = min(MIN_CALIBRATION_SAMPLES, samples)
    if count < needed:
        raise DataError(
            f"calibration data {data.description} has {count} samples; at least {needed} are "
            "needed for usable scales",
            "give more calibration samples (a few hundred is typical)",
        )
    return Calibration(data, count, sha256)


def ort_reader(data: DataSource, total: int | None = None) -> Any:
    """An `onnxruntime.quantization.CalibrationDataReader` over `data`; `.samples` counts what
    it has handed out and `rewind()` starts again (ORT may read the data more than once)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = 0
            self.batches: Iterator[Batch] = iter(data)
            self.bar = contextlib.ExitStack()
            self.advance = self.bar.enter_context(
                progress.step("ORT calibration", total or data.limit)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            if batch is None:
                self.bar.close()  # the bar goes when ORT has read everything
                return None
            self.samples += batch.size
            self.advance(batch.size)
            return dict(batch.inputs)

        def rewind(self) -> None:
            self.samples = 0
            self.batches = iter(data)

    return Reader()


class SampleFeeds:
    """Every sample of `data` as its own batch-1 feed (what NNCF's statistics expect), read
    lazily on each pass, so memory holds one batch whatever the data's size; each pass shows
    a progress bar. `served` counts the samples handed out by the last pass."""

    def __init__(self, data: DataSource, samples: int, description: str) -> None:
        self.data = data
        self.samples = samples
        self.description = description
        self.served = 0

    def __len__(self) -> int:
        return self.samples

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.served = 0
        with progress.step(self.description, self.samples) as advance:
            for batch in self.data:
                for row in range(batch.size):
                    self.served += 1
                    advance()
                    yield {name: value[row : row + 1] for name, value in batch.inputs.items()}

    def first(self, count: int) -> list[dict[str, np.ndarray]]:
        """The first `count` feeds (no progress bar)."""
        feeds: list[dict[str, np.ndarray]] = []
        for batch in self.data:
            for row in range(batch.size):
                if len(feeds) >= count:
                    return feeds
                feeds.append({name: value[row : row + 1] for name, value in batch.inputs.items()})
        return feeds


@contextlib.contextmanager
def nncf_quiet() -> Iterator[None]:
    """NNCF draws its own progress bars on stdout and logs each step; dlopt shows its own bar
    (SampleFeeds) on stderr and keeps stdout for results."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def calibration_record(
    calibration: Calibration, samples: int, method: str | None
) -> dict[str, Any]:
    """What the manifest says about the calibration: source, sha256, samples read, method."""
    return {
        "source": calibration.data.description,
        "sha256": calibration.sha256,
        "samples": samples,
        "method": method,
    }
