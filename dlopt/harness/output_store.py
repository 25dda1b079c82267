"""A pair's outputs on the evaluation set, streamed to disk and read back a block at a time.

The bench worker writes each output (and the labels) into a memory-mapped `.npy` file as the
batches come, so it never holds the whole evaluation set's outputs; drift and task metrics read
them back in blocks (`dlopt.harness.evaluation_stats`). A pair evaluated in shards (index ranges
of the evaluation set, one worker each) has one part per shard; `StoredOutputs` reads its parts
as one sequence of samples.

On disk: a part is a folder holding `part.json` (its index range, and each output's name, file,
dtype and shape) with `output_<i>.npy` files and `labels.npy`; a pair's `<id>.outputs.json`
lists its parts in order (paths relative to that file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Pages written through a memory map count in the process's RSS until it is unmapped: the
# writer re-maps its files after this many bytes, and readers map a file only per read, so that
# RSS stays bounded by a window, not by the size of the evaluation set.
REMAP_BYTES = 8 << 20
PART_FILE = "part.json"
INDEX_SUFFIX = ".outputs.json"
LABELS_FILE = "labels.npy"
LABELS_KEY = "\x00labels"  # `read`'s name for the labels: never an output name


class OutputWriter:
    """Streams batches of outputs into memory-mapped `.npy` files of `count` samples.

    The files are created at the first batch (when the outputs' shapes and dtypes are known);
    every later batch must have the same trailing shape and dtype. `close` checks that exactly
    `count` samples came and writes `part.json`.
    """

    def __init__(
        self,
        folder: Path,
        start: int,
        count: int,
        file_for: Callable[[int, str], str] = lambda index, name: f"output_{index}.npy",
    ) -> None:
        self.folder = folder
        self.file_for = file_for
        self.start = start
        self.count = count
        self.written = 0
        self._outputs: dict[str, tuple[str, np.memmap]] = {}
        self._labels: np.memmap | None = None
        self._mapped_bytes = 0
        folder.mkdir(parents=True, exist_ok=True)

    def append(self, outputs: Mapping[str, np.ndarray], labels: np.ndarray | None) -> None:
        """Write one batch; raises ValueError when it does not fit the first batch's layout."""
        size = int(next(iter(outputs.values())).shape[0]) if outputs else 0
        if self.written + size > self.count:
            raise ValueError(
                f"the data yielded more than the {self.count} samples counted before "
                "(does the data source change between passes?)"
            )
        if not self._outputs:
            self._open(outputs, labels)
        for name, value in outputs.items():
            if name not in self._outputs:
                raise ValueError(f"output {name!r} appeared after the first batch")
            _, array = self._outputs[name]
            _fits(array, value, f"output {name!r}")
            array[self.written : self.written + size] = value
        if self._labels is not None:
            if labels is None:
                raise ValueError("some batches have labels and some do not")
            _fits(self._labels, labels, "labels")
            self._labels[self.written : self.written + size] = labels
        self.written += size
        self._mapped_bytes += sum(value.nbytes for value in outputs.values())
        if self._mapped_bytes >= REMAP_BYTES:
            self._remap()

    def _remap(self) -> None:
        """Flush and map the files afresh: the written pages leave this process's RSS."""
        for name, (file, array) in list(self._outputs.items()):
            array.flush()
            self._outputs[name] = (file, np.lib.format.open_memmap(self.folder / file, "r+"))
        if self._labels is not None:
            self._labels.flush()
            self._labels = np.lib.format.open_memmap(self.folder / LABELS_FILE, "r+")
        self._mapped_bytes = 0

    def close(self) -> dict[str, Any]:
        """Flush the files and write `part.json`; returns its content."""
        if self.written != self.count:
            raise ValueError(
                f"the data yielded {self.written} samples, not the {self.count} counted before "
                "(does the data source change between passes?)"
            )
        entries = []
        for name, (file, array) in self._outputs.items():
            array.flush()
            entries.append({"name": name, "file": file, "dtype": array.dtype.str})
        if self._labels is not None:
            self._labels.flush()
        part = {
            "start": self.start,
            "stop": self.start + self.count,
            "outputs": entries,
            "labels": LABELS_FILE if self._labels is not None else None,
        }
        (self.folder / PART_FILE).write_text(json.dumps(part, indent=1))
        self._outputs.clear()
        self._labels = None
        return part

    def _open(self, outputs: Mapping[str, np.ndarray], labels: np.ndarray | None) -> None:
        for index, (name, value) in enumerate(outputs.items()):
            file = self.file_for(index, name)
            array = np.lib.format.open_memmap(
                self.folder / file, mode="w+", dtype=value.dtype, shape=_shape(value, self.count)
            )
            self._outputs[name] = (file, array)
        if labels is not None:
            self._labels = np.lib.format.open_memmap(
                self.folder / LABELS_FILE,
                mode="w+",
                dtype=labels.dtype,
                shape=_shape(labels, self.count),
            )


def _shape(value: np.ndarray, count: int) -> tuple[int, ...]:
    return (count, *value.shape[1:])


def _fits(array: np.ndarray, value: np.ndarray, what: str) -> None:
    if value.shape[1:] != array.shape[1:] or value.dtype != array.dtype:
        raise ValueError(
            f"{what} is {value.dtype}{list(value.shape[1:])} per sample in a later batch but "
            f"{array.dtype}{list(array.shape[1:])} in the first: outputs must keep one shape"
        )


@dataclass
class Part:
    """One shard's outputs: samples [start, stop) of the evaluation set."""

    folder: Path
    start: int
    stop: int
    files: dict[str, str]  # output name -> file in `folder`
    labels: str | None

    @classmethod
    def read(cls, folder: Path) -> Part:
        data = json.loads((folder / PART_FILE).read_text())
        files = {entry["name"]: entry["file"] for entry in data["outputs"]}
        return cls(folder, int(data["start"]), int(data["stop"]), files, data.get("labels"))


def write_index(path: Path, parts: Sequence[Path]) -> Path:
    """`<id>.outputs.json` listing a pair's part folders (relative to it) in order."""
    relative = [str(Path(part).resolve().relative_to(path.parent.resolve())) for part in parts]
    path.write_text(json.dumps({"parts": relative}, indent=1))
    return path


class StoredOutputs:
    """A pair's outputs (all its parts) as one sequence of samples, read in blocks."""

    def __init__(self, parts: Sequence[Part]) -> None:
        if not parts:
            raise ValueError("no output parts")
        self.parts = sorted(parts, key=lambda part: part.start)
        for before, after in zip(self.parts, self.parts[1:], strict=False):
            if before.stop != after.start:
                raise ValueError(f"output parts leave a gap at sample {before.stop}")
        self.start = self.parts[0].start
        self.stop = self.parts[-1].stop
        self.names = list(self.parts[0].files)
        self.has_labels = self.parts[0].labels is not None
        self._layouts: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}

    @property
    def count(self) -> int:
        return self.stop - self.start

    def sample_shape(self, name: str) -> tuple[int, ...]:
        return self._layout(name)[0]

    def dtype(self, name: str) -> np.dtype[Any]:
        return self._layout(name)[1]

    def _layout(self, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
        if name not in self._layouts:
            array = self._map(0, name)
            self._layouts[name] = (tuple(array.shape[1:]), array.dtype)
            del array
        return self._layouts[name]

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of an output (or `labels`), copied into memory."""
        pieces = []
        for index, part in enumerate(self.parts):
            low, high = max(start, part.start), min(stop, part.stop)
            if low < high:
                array = self._map(index, name)  # mapped for this read only (see REMAP_BYTES)
                pieces.append(np.array(array[low - part.start : high - part.start]))
                del array
        if not pieces:
            raise ValueError(f"samples [{start}, {stop}) are outside [{self.start}, {self.stop})")
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def read_labels(self, start: int, stop: int) -> np.ndarray:
        return self.read(LABELS_KEY, start, stop)

    def _map(self, index: int, name: str) -> np.ndarray:
        part = self.parts[index]
        file = part.labels if name == LABELS_KEY else part.files.get(name)
        if file is None:
            raise KeyError(f"no output {name!r} in {part.folder}")
        return np.load(part.folder / file, mmap_mode="r", allow_pickle=False)


def open_outputs(path: str | Path) -> StoredOutputs:
    """The outputs written for a pair: an `<id>.outputs.json` index or one part folder."""
    path = Path(path)
    if path.is_dir():
        return StoredOutputs([Part.read(path)])
    index = json.loads(path.read_text())
    return StoredOutputs([Part.read(path.parent / part) for part in index["parts"]])


def write_part(
    folder: Path, outputs: Mapping[str, np.ndarray], labels: np.ndarray | None, start: int = 0
) -> Path:
    """Arrays held in memory written as one part (samples [start, start + len))."""
    count = int(next(iter(outputs.values())).shape[0])
    writer = OutputWriter(folder, start, count)
    writer.append(outputs, labels)
    writer.close()
    return folder
