"""Evaluation and calibration data, streamed in validated batches.

Sources (`open_data(source, specs)`):
- `path.npz`: arrays named like the model inputs, plus optional `labels`; read row by row from
  the archive, so memory is bounded by the batch even for a large file;
- a folder of `NAME.npy` files (and optional `labels.npy`), memory-mapped;
  for both, every array's header (shape, dtype) is checked against the specs before any data
  is read, so a small file that declares a huge array (a zip bomb) costs nothing; object
  arrays (pickles) are refused;
- `file.py:function` or `package.module:function`: a callable returning an iterable of batches
  (dicts of arrays, optionally with `labels`); called with `batch_size=` when it accepts it;
- `text:FILE.txt` or `text:FILE.jsonl` (`@MODEL_FOLDER` for the tokenizer): sentences tokenized
  with the model's tokenizer, padded to its sequence length (`dlopt.text_data`);
- `sample:NAME[:SPLIT]`: a sample model's dataset (`models/NAME/data.py`, split `evaluation`
  by default, or `calibration` / `training`);
- `synthetic` or None: random batches from the input specs (never zeros) for latency-only runs.

Axis 0 of every input is the batch axis. Source batches of any size are re-batched to
`batch_size`; every batch is checked against the specs (names, rank, static dims, dtype,
NaN/Inf in inputs and labels, object arrays) and a problem is a `DataError` naming the source,
the input and the fix.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.data_files import (
    LABELS,
    RawChunks,
    check_dtype,
    check_shape,
    npy_folder,
    npz_file,
)
from dlopt.errors import DataError, SourceError
from dlopt.specs import TensorSpec, random_feed

SYNTHETIC = "synthetic"
SYNTHETIC_BATCHES = 8  # distinct random batches a synthetic source yields (without a limit)
SAMPLE_SPLITS = ("evaluation", "calibration", "training")
DATA_HELP = (
    "data is a .npz file, a folder of NAME.npy files, file.py:function, package.module:function, "
    "text:FILE.txt, text:FILE.jsonl, sample:NAME[:SPLIT] or synthetic"
)
_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


@dataclass
class Batch:
    """Model inputs by name (axis 0 is the batch) and, when the data has them, the labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0]) if self.inputs else 0


class DataSource:
    """A re-iterable stream of validated `Batch`es; each iteration re-reads the source."""

    def __init__(
        self,
        description: str,
        chunks: RawChunks,
        specs: Sequence[TensorSpec],
        batch_size: int,
        limit: int | None,
    ) -> None:
        self.description = description
        self.specs = list(specs)
        self.batch_size = _effective_batch_size(self.specs, batch_size, description)
        self.limit = limit
        self._chunks = chunks

    def __iter__(self) -> Iterator[Batch]:
        produced = 0
        has_labels: bool | None = None
        for batch in _rebatch(self._validated_chunks(), self.batch_size):
            if has_labels is None:
                has_labels = batch.labels is not None
            elif has_labels != (batch.labels is not None):
                raise DataError(
                    f"data source {self.description}: some batches have labels and some do not",
                    "give labels for every batch or for none",
                )
            if self.limit is not None and produced + batch.size > self.limit:
                batch = _slice(batch, 0, self.limit - produced)
            if batch.size == 0:
                break
            if batch.size < self.batch_size and self._static_batch:
                break  # a model with a static batch dimension cannot take the remainder
            produced += batch.size
            yield batch
            if self.limit is not None and produced >= self.limit:
                break
        if produced == 0:
            raise DataError(
                f"data source {self.description} yielded no samples",
                "check that the file or function returns at least one batch"
                + (" of the model's static batch size" if self._static_batch else ""),
            )

    @property
    def _static_batch(self) -> bool:
        return any(spec.dims and not spec.dims[0].is_dynamic for spec in self.specs)

    def _validated_chunks(self) -> Iterator[Batch]:
        chunks = self._chunks()
        for index in itertools.count():
            # Only the reading is wrapped: a bug in the checks below stays a bug (exit 4).
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except DataError:
                raise
            except (OSError, ValueError, zipfile.BadZipFile) as error:
                raise DataError(
                    f"cannot read data source {self.description}: {type(error).__name__}: {error}",
                    "check that the file is complete and was written by numpy",
                ) from error
            yield validate_batch(chunk, self.specs, f"{self.description} (batch {index})")

    def count_samples(self) -> int:
        """Samples one pass yields (after the limit), found by streaming the source."""
        return sum(batch.size for batch in self)

    def sha256(self) -> str:
        """Hex sha256 of the streamed content (names, dtypes, shapes, values, labels)."""
        return self.count_and_sha256()[1]

    def count_and_sha256(self) -> tuple[int, str]:
        """Samples and sha256 of one pass, for callers that need both (one read, not two)."""
        digest = hashlib.sha256()
        count = 0
        for batch in self:
            hash_batch(digest, batch)
            count += batch.size
        return count, digest.hexdigest()

    def __repr__(self) -> str:
        return f"DataSource({self.description!r}, batch_size={self.batch_size})"


def hash_batch(digest: Any, batch: Batch) -> None:
    """Add one batch to a `hashlib` digest, as `DataSource.sha256` does."""
    for name in sorted(batch.inputs):
        _hash_array(digest, name, batch.inputs[name])
    if batch.labels is not None:
        _hash_array(digest, LABELS, batch.labels)


def _hash_array(digest: Any, name: str, array: np.ndarray) -> None:
    digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(np.ascontiguousarray(array).tobytes())


def open_data(
    source: str | None,
    specs: Sequence[TensorSpec],
    batch_size: int = 32,
    limit: int | None = None,
    seed: int = 0,
) -> DataSource:
    """A DataSource for `source` (see the module docstring); raises DataError.

    Nothing is read until the source is iterated, except what is needed to recognise it.
    """
    if batch_size < 1:
        raise DataError(
            f"batch size {batch_size} must be at least 1", "pass --batch-size 1 or more"
        )
    if limit is not None and limit < 1:
        raise DataError(f"sample limit {limit} must be at least 1", "drop the limit or raise it")
    if not specs:
        raise DataError("no input specs to check the data against", "give the model's inputs")
    if source is None or source == SYNTHETIC:
        return _synthetic(specs, batch_size, limit, seed)
    path = Path(source)
    if path.is_dir():
        chunks = npy_folder(path, specs)
        return DataSource(f"{source} (npy folder)", chunks, specs, batch_size, limit)
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(f"data file {source} is not a .npz file", DATA_HELP)
        return DataSource(f"{source}", npz_file(path, specs), specs, batch_size, limit)
    if source.startswith("sample:"):
        return DataSource(source, _sample(source), specs, batch_size, limit)
    if source.startswith("text:"):
        from dlopt.text_data import text_chunks

        return DataSource(source, text_chunks(source, specs), specs, batch_size, limit)
    if ":" in source:
        return DataSource(source, _function(source, batch_size), specs, batch_size, limit)
    raise DataError(f"data source {source!r} does not exist", DATA_HELP)


def _effective_batch_size(specs: Sequence[TensorSpec], batch_size: int, where: str) -> int:
    static = {spec.dims[0].size for spec in specs if spec.dims and not spec.dims[0].is_dynamic}
    if len(static) > 1:
        raise DataError(f"the model's inputs have different static batch sizes {sorted(static)}")
    return static.pop() if static else batch_size


def _synthetic(
    specs: Sequence[TensorSpec], batch_size: int, limit: int | None, seed: int
) -> DataSource:
    effective = _effective_batch_size(specs, batch_size, SYNTHETIC)
    batches = SYNTHETIC_BATCHES if limit is None else -(-limit // effective)

    def chunks() -> Iterator[Mapping[str, Any]]:
        for index in range(batches):
            axis_sizes = {
                spec.dims[0].axis: effective for spec in specs if spec.dims and spec.dims[0].axis
            }
            yield random_feed(specs, axis_sizes, seed=seed + index)

    return DataSource(f"synthetic (seed {seed})", chunks, specs, batch_size, limit)


def _sample(source: str) -> RawChunks:
    parts = source.split(":")
    name = parts[1] if len(parts) > 1 else ""
    split = parts[2] if len(parts) > 2 else "evaluation"
    available = sorted(p.name for p in _MODELS_DIR.glob("*") if (p / "data.py").is_file())
    if split not in SAMPLE_SPLITS:
        raise DataError(f"unknown split {split!r} in {source!r}", f"use {', '.join(SAMPLE_SPLITS)}")
    data_file = _MODELS_DIR / name / "data.py"
    if not data_file.is_file():
        raise DataError(
            f"no sample dataset {name!r} ({data_file} does not exist)",
            f"sample datasets: {', '.join(available) or 'none installed'}",
        )
    return _function(f"{data_file}:{split}", None, description=source)


def _function(source: str, batch_size: int | None, description: str | None = None) -> RawChunks:
    from dlopt.sources import SourceRef, _import_python_module, parse_source

    where = description or source
    try:
        ref = parse_source(source)
    except SourceError as error:
        raise DataError(f"data source {where!r}: {error.message}", DATA_HELP) from error
    if not isinstance(ref, SourceRef) or ref.attribute is None:
        raise DataError(f"data source {where!r} is not file.py:function", DATA_HELP)

    def chunks() -> Iterator[Mapping[str, Any]]:
        try:
            module = _import_python_module(ref)
        except SourceError as error:
            raise DataError(f"data source {where!r}: {error.message}", error.hint) from error
        function = getattr(module, ref.attribute or "", None)
        if not callable(function):
            raise DataError(
                f"data source {where!r}: {ref.attribute!r} is missing or not callable",
                "define a function that returns an iterable of dicts of arrays",
            )
        try:
            batches = function(**_batch_size_kwargs(function, batch_size))
            if isinstance(batches, Mapping):
                batches = [batches]
            if not isinstance(batches, Iterable):
                raise DataError(
                    f"data source {where!r} returned a {type(batches).__name__}, not batches",
                    "return (or yield) dicts of arrays, e.g. {'image': array, 'labels': array}",
                )
            for batch in batches:
                if not isinstance(batch, Mapping):
                    raise DataError(
                        f"data source {where!r} yielded a {type(batch).__name__}, not a dict",
                        "yield dicts of arrays keyed by input name, plus optional 'labels'",
                    )
                yield batch
        except DataError:
            raise
        except Exception as error:
            raise DataError(
                f"data source {where!r} raised {type(error).__name__}: {error}",
                "fix the data function (run it on its own to see the traceback)",
            ) from error

    return chunks


def _batch_size_kwargs(function: Callable[..., Any], batch_size: int | None) -> dict[str, int]:
    if batch_size is None:
        return {}
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}
    accepts = "batch_size" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
    return {"batch_size": batch_size} if accepts else {}


def validate_batch(chunk: Mapping[str, Any], specs: Sequence[TensorSpec], where: str) -> Batch:
    """Check one source batch against the specs and cast it safely; raises DataError."""
    names = {spec.name for spec in specs}
    missing = [name for name in names if name not in chunk]
    extra = [key for key in chunk if key not in names and key != LABELS]
    if missing:
        raise DataError(
            f"{where} has no input {missing[0]!r} (it has {', '.join(map(str, chunk)) or 'none'})",
            f"name the arrays like the model inputs: {', '.join(sorted(names))}",
        )
    if extra:
        raise DataError(
            f"{where} has {extra[0]!r}, which is not a model input",
            f"the model takes {', '.join(sorted(names))} (plus optional '{LABELS}'); drop the rest",
        )
    inputs = {spec.name: _check_input(chunk[spec.name], spec, where) for spec in specs}
    sizes = {name: array.shape[0] for name, array in inputs.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(
            f"{where}: inputs differ in batch size {sizes}", "give every input one row per sample"
        )
    labels = chunk.get(LABELS)
    if labels is not None:
        labels = _checked_labels(np.asarray(labels), next(iter(sizes.values())), where)
    return Batch(inputs, labels)


def _checked_labels(labels: np.ndarray, batch: int, where: str) -> np.ndarray:
    if labels.ndim == 0 or labels.shape[0] != batch:
        raise DataError(
            f"{where}: {LABELS} has {labels.shape[0] if labels.ndim else 'no'} rows but the "
            f"batch has {batch}",
            "give one label per sample",
        )
    if labels.dtype.kind not in "biuf":
        raise DataError(
            f"{where}: {LABELS} are {labels.dtype}, not numbers",
            "give class indices (integers) or numeric targets",
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DataError(
            f"{where}: {LABELS} contain NaN or Inf",
            "clean the labels or drop those samples: metrics and fine-tuning need finite labels",
        )
    return labels


def _check_input(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    array = np.asarray(value)
    what = f"{where}: input {spec.name!r}"
    check_dtype(array.dtype, spec, what)
    check_shape(array.shape, spec, what)
    target = np.dtype(spec.dtype)
    if array.dtype != target:
        converted = array.astype(target)
        if target.kind in "iu" and not np.array_equal(converted, array):
            raise DataError(f"{what} has values that do not fit {spec.dtype}")
        array = converted
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{what} contains NaN or Inf", "clean the data or drop those samples")
    return array


def _rebatch(batches: Iterator[Batch], batch_size: int) -> Iterator[Batch]:
    """Batches of exactly `batch_size` samples (the last may be smaller)."""
    pending: list[Batch] = []
    pending_size = 0
    for batch in batches:
        if not pending and batch.size == batch_size:
            yield batch  # the common case: no copy
            continue
        pending.append(batch)
        pending_size += batch.size
        while pending_size >= batch_size:
            merged = _concat(pending)
            yield _slice(merged, 0, batch_size)
            rest = _slice(merged, batch_size, merged.size)
            pending, pending_size = ([rest], rest.size) if rest.size else ([], 0)
    if pending_size:
        yield _concat(pending)


def _concat(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    with_labels = [b.labels is not None for b in batches]
    if any(with_labels) and not all(with_labels):
        raise DataError("some batches have labels and some do not", "give labels for all or none")
    labels = (
        np.concatenate([b.labels for b in batches if b.labels is not None])
        if all(with_labels)
        else None
    )
    names = batches[0].inputs
    return Batch(
        {name: np.concatenate([b.inputs[name] for b in batches]) for name in names}, labels
    )


def _slice(batch: Batch, start: int, stop: int) -> Batch:
    return Batch(
        {name: array[start:stop] for name, array in batch.inputs.items()},
        None if batch.labels is None else batch.labels[start:stop],
    )
