"""Outputs stream into memory-mapped .npy files and read back across shard parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlopt.harness.output_store import (
    OutputWriter,
    Part,
    StoredOutputs,
    open_outputs,
    write_index,
    write_part,
)


def test_batches_stream_into_files_that_read_back(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path / "part", start=0, count=10)
    values = np.arange(40, dtype=np.float32).reshape(10, 2, 2)
    for low in range(0, 10, 4):
        writer.append({"out/0": values[low : low + 4]}, np.arange(low, min(low + 4, 10)))
    part = writer.close()

    stored = open_outputs(tmp_path / "part")
    assert part["stop"] == 10 and stored.names == ["out/0"]  # any output name: files by index
    assert np.array_equal(stored.read("out/0", 0, 10), values)
    assert np.array_equal(stored.read_labels(3, 7), np.arange(3, 7))
    assert isinstance(np.load(tmp_path / "part" / "output_0.npy", mmap_mode="r"), np.memmap)


def test_a_batch_of_another_shape_or_too_many_samples_is_refused(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path / "part", start=0, count=4)
    writer.append({"out": np.zeros((2, 3), np.float32)}, None)
    with pytest.raises(ValueError, match="keep one shape"):
        writer.append({"out": np.zeros((2, 4), np.float32)}, None)
    with pytest.raises(ValueError, match="more than the 4 samples"):
        writer.append({"out": np.zeros((3, 3), np.float32)}, None)
    with pytest.raises(ValueError, match="yielded 2 samples, not the 4"):
        writer.close()


def test_parts_read_as_one_sequence_and_gaps_are_refused(tmp_path: Path) -> None:
    values = np.arange(20, dtype=np.int64).reshape(10, 2)
    first = write_part(tmp_path / "a", {"out": values[:6]}, None, start=0)
    second = write_part(tmp_path / "b", {"out": values[6:]}, None, start=6)
    index = write_index(tmp_path / "pair.outputs.json", [second, first])  # any order

    stored = open_outputs(index)
    assert (stored.start, stored.stop, stored.has_labels) == (0, 10, False)
    assert np.array_equal(stored.read("out", 4, 8), values[4:8])  # spans both parts
    with pytest.raises(ValueError, match="gap at sample 6"):
        StoredOutputs(
            [Part.read(first), Part.read(write_part(tmp_path / "c", {"out": values[7:]}, None, 7))]
        )


def test_files_from_a_node_cannot_land_outside_the_jobs_folder(tmp_path: Path) -> None:
    from dlopt.harness.executors.shipping import receive

    receive({"a/result.json": b"{}"}, tmp_path / "jobs")
    assert (tmp_path / "jobs" / "a" / "result.json").read_bytes() == b"{}"
    for name in ("../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt"):
        with pytest.raises(ValueError, match="outside"):
            receive({name: b"x"}, tmp_path / "jobs")
    assert not (tmp_path / "escaped.txt").exists()
