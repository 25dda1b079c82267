"""Arrays in `.npz` files and folders of `.npy` files, read lazily and checked from their
headers first.

Before any data is read, every array's header (shape, dtype) is checked against the model's
input specs and, inside a `.npz`, against the bytes the member really holds: a 1.5 MB file
that declares a (2, 201326592) array is refused in milliseconds instead of being inflated
into gigabytes. Object arrays (pickles) are refused (`allow_pickle` stays False). Rows are
then read at most CHUNK_BYTES (or one sample) at a time.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from dlopt.errors import DataError
from dlopt.specs import TensorSpec

LABELS = "labels"
CHUNK_BYTES = 64 << 20  # rows read from a file at once: at most this much (or one row)

RawChunks = Callable[[], Iterator[Mapping[str, Any]]]


def npy_folder(folder: Path, specs: Sequence[TensorSpec]) -> RawChunks:
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise DataError(f"data folder {folder} has no .npy files", "save one NAME.npy per input")

    def chunks() -> Iterator[Mapping[str, Any]]:
        declared = {}
        for file in files:
            with open(file, "rb") as stream:
                shape, dtype, _ = _read_npy_header(stream, f"{file.name} in {folder}")
            declared[file.stem] = (shape, dtype)
        check_declared_arrays(declared, specs, str(folder))
        arrays = {file.stem: _NpyFile(file) for file in files}
        yield from _row_chunks(arrays, str(folder))

    return chunks


class _NpyFile:
    """A .npy file memory-mapped only while a slice of it is copied out: pages read through a
    map held for the whole pass would count in RSS, which would then grow with the data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.ndim = array.ndim
        self.dtype = array.dtype
        del array

    def __getitem__(self, rows: slice) -> np.ndarray:
        array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        try:
            return np.array(array[rows])
        finally:
            del array


def _row_chunks(arrays: Mapping[str, Any], where: str) -> Iterator[dict[str, Any]]:
    """Slices of samples from arrays (memory-mapped or lazily read) of equal length, at most
    CHUNK_BYTES (or one sample) at a time."""
    lengths = {name: (array.shape[0] if array.ndim else None) for name, array in arrays.items()}
    if any(length is None for length in lengths.values()) or len(set(lengths.values())) > 1:
        raise DataError(
            f"arrays in {where} differ in length (axis 0): {lengths}",
            "every input and labels need one row per sample",
        )
    row_bytes = sum(_row_bytes(array.shape, array.dtype) for array in arrays.values())
    rows = max(1, min(256, CHUNK_BYTES // max(row_bytes, 1)))
    total = next(iter(lengths.values()), 0) or 0
    for start in range(0, total, rows):
        yield {name: np.asarray(array[start : start + rows]) for name, array in arrays.items()}


def _row_bytes(shape: Sequence[int], dtype: np.dtype[Any]) -> int:
    return math.prod(shape[1:]) * dtype.itemsize


def check_declared_arrays(
    declared: Mapping[str, tuple[tuple[int, ...], np.dtype[Any]]],
    specs: Sequence[TensorSpec],
    where: str,
) -> None:
    """Shapes and dtypes from the array headers against the specs, before any data is read;
    raises DataError as `validate_batch` would for the data itself."""
    names = {spec.name for spec in specs}
    missing = sorted(names - set(declared))
    extra = sorted(set(declared) - names - {LABELS})
    if missing or extra:
        raise DataError(
            f"{where} has arrays {sorted(declared)}; "
            + (f"no input {missing[0]!r}" if missing else f"{extra[0]!r} is not a model input"),
            f"name the arrays like the model inputs: {', '.join(sorted(names))} (plus optional "
            f"'{LABELS}')",
        )
    for spec in specs:
        shape, dtype = declared[spec.name]
        check_dtype(dtype, spec, f"{where}: input {spec.name!r}")
        check_shape(shape, spec, f"{where}: input {spec.name!r}")
    if LABELS in declared and not declared[LABELS][0]:
        raise DataError(f"{where}: {LABELS} is a scalar", "give one label per sample")


def _read_npy_header(stream: IO[bytes], where: str) -> tuple[tuple[int, ...], Any, bool]:
    """(shape, dtype, fortran_order) from a .npy header; refuses object arrays (pickles)."""
    try:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(stream)
    except (ValueError, OSError, SyntaxError) as error:
        raise DataError(
            f"{where} is not a readable .npy array: {error}",
            "save it with numpy.save / numpy.savez",
        ) from error
    if dtype.hasobject:
        raise DataError(
            f"{where} is an object array (a pickle), which dlopt does not load",
            "save plain numeric arrays (e.g. array.astype('float32'))",
        )
    return tuple(shape), dtype, fortran


def npz_file(path: Path, specs: Sequence[TensorSpec]) -> RawChunks:
    def chunks() -> Iterator[Mapping[str, Any]]:
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.endswith(".npy")]
            if not members:
                raise DataError(f"{path} holds no arrays", "save it with numpy.savez")
            arrays: dict[str, _NpyMember] = {}
            try:
                for name in members:
                    arrays[name[: -len(".npy")]] = _NpyMember(archive, name, path)
                declared = {name: (array.shape, array.dtype) for name, array in arrays.items()}
                check_declared_arrays(declared, specs, str(path))
                yield from _row_chunks(arrays, str(path))
            finally:
                for array in arrays.values():
                    array.close()

    return chunks


class _NpyMember:
    """An array inside a .npz read forward in row slices, never loaded whole."""

    def __init__(self, archive: zipfile.ZipFile, member: str, path: Path) -> None:
        where = f"array {member[:-4]!r} in {path}"
        self.stream: IO[bytes] = archive.open(member)
        try:
            shape, dtype, fortran = _read_npy_header(self.stream, where)
            if fortran:
                raise DataError(
                    f"{where} is Fortran-ordered",
                    "save plain C-ordered numeric arrays (numpy.ascontiguousarray)",
                )
            declared = math.prod(shape) * dtype.itemsize  # Python ints: a forged shape cannot wrap
            stored = archive.getinfo(member).file_size - self.stream.tell()
            if declared != stored:
                raise DataError(
                    f"{where} declares shape {tuple(shape)} ({declared} bytes) but holds "
                    f"{stored} bytes",
                    "the file is damaged or forged: save it again with numpy.savez",
                )
        except BaseException:
            self.stream.close()
            raise
        self.shape: tuple[int, ...] = tuple(shape)
        self.ndim = len(self.shape)
        self.dtype = dtype
        self.row_bytes = _row_bytes(self.shape, dtype)
        self.next_row = 0

    def __getitem__(self, rows: slice) -> np.ndarray:
        if rows.start != self.next_row:
            raise ValueError("rows must be read in order")
        stop = min(rows.stop, self.shape[0])
        data = self.stream.read((stop - rows.start) * self.row_bytes)
        self.next_row = stop
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - rows.start, *self.shape[1:]))

    def close(self) -> None:
        self.stream.close()


def check_shape(shape: tuple[int, ...], spec: TensorSpec, what: str) -> None:
    if len(shape) != len(spec.dims):
        raise DataError(
            f"{what} has rank {len(shape)} (shape {shape}) but the model wants rank "
            f"{len(spec.dims)} ({spec})",
            "reshape the data; axis 0 is the batch",
        )
    for axis, (size, dim) in enumerate(zip(shape, spec.dims, strict=True)):
        if axis > 0 and not dim.is_dynamic and size != dim.size:
            raise DataError(
                f"{what} has size {size} on axis {axis} but the model wants {dim.size} "
                f"(shape {shape}, spec {spec})",
                "resize the data to the model's static dimensions",
            )


def check_dtype(dtype: np.dtype[Any], spec: TensorSpec, what: str) -> None:
    if dtype.hasobject:
        raise DataError(
            f"{what} holds Python objects, not numbers",
            f"give a numeric array (e.g. numpy.asarray(values, dtype='{spec.dtype}'))",
        )
    if dtype != np.dtype(spec.dtype) and not np.can_cast(dtype, spec.dtype, casting="same_kind"):
        raise DataError(
            f"{what} is {dtype} but the model wants {spec.dtype}",
            f"convert it (e.g. array.astype('{spec.dtype}')) if that is what you mean",
        )
