"""dlopt.data: every source kind, re-batching, limits, hashing and each validation error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlopt.data import Batch, open_data
from dlopt.errors import DataError
from dlopt.specs import parse_input_specs

SPECS = parse_input_specs(["image:batch=2x1x4x4"])
TEXT_SPECS = parse_input_specs(
    ["input_ids:batch=2xseq=5:int64:0..99", "attention_mask:batch=2xseq=5:int64:1..1"]
)


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 4, 4)).astype(np.float32)


def _collect(source: object) -> list[Batch]:
    return list(source)  # type: ignore[call-overload]


def test_npz_streams_rebatched_with_labels(tmp_path: Path) -> None:
    images, labels = _images(10), np.arange(10)
    np.savez(tmp_path / "eval.npz", image=images, labels=labels)

    data = open_data(str(tmp_path / "eval.npz"), SPECS, batch_size=4)
    batches = _collect(data)

    assert [batch.size for batch in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b.inputs["image"] for b in batches]), images)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), labels)  # type: ignore[misc]
    assert data.count_samples() == 10
    assert _collect(data)[0].inputs["image"].shape == (4, 1, 4, 4)  # re-iterable


def test_compressed_npz_reads_the_same(tmp_path: Path) -> None:
    images = _images(7)
    np.savez_compressed(tmp_path / "eval.npz", image=images)

    batches = _collect(open_data(str(tmp_path / "eval.npz"), SPECS, batch_size=3))

    np.testing.assert_array_equal(np.concatenate([b.inputs["image"] for b in batches]), images)
    assert batches[0].labels is None


def test_npy_folder_is_memory_mapped_and_limited(tmp_path: Path) -> None:
    np.save(tmp_path / "image.npy", _images(9))
    np.save(tmp_path / "labels.npy", np.arange(9))

    data = open_data(str(tmp_path), SPECS, batch_size=4, limit=6)

    assert [batch.size for batch in data] == [4, 2]
    assert data.count_samples() == 6


def test_function_source_gets_batch_size_and_casts_safely(tmp_path: Path) -> None:
    (tmp_path / "my_data.py").write_text(
        "import numpy as np\n"
        "def batches(batch_size=1):\n"
        "    for start in range(0, 5, batch_size):\n"
        "        n = min(batch_size, 5 - start)\n"
        "        yield {'input_ids': np.full((n, 3), 7, dtype=np.int32),\n"
        "               'attention_mask': np.ones((n, 3), dtype=np.int32), 'labels': np.zeros(n)}\n"
    )

    batches = _collect(open_data(f"{tmp_path}/my_data.py:batches", TEXT_SPECS, batch_size=2))

    assert [b.size for b in batches] == [2, 2, 1]
    assert batches[0].inputs["input_ids"].dtype == np.int64
    assert batches[0].inputs["input_ids"].shape == (2, 3)  # seq is dynamic


def test_float64_is_cast_to_float32(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", image=_images(2).astype(np.float64))

    batch = _collect(open_data(str(tmp_path / "d.npz"), SPECS))[0]

    assert batch.inputs["image"].dtype == np.float32


def test_synthetic_is_random_distinct_and_never_zero() -> None:
    data = open_data("synthetic", TEXT_SPECS, batch_size=3, seed=1)
    batches = _collect(data)

    assert len(batches) >= 2
    assert all(b.inputs["input_ids"].shape == (3, 5) for b in batches)
    assert not np.array_equal(batches[0].inputs["input_ids"], batches[1].inputs["input_ids"])
    assert all(b.inputs["attention_mask"].min() == 1 for b in batches)
    assert any(b.inputs["input_ids"].any() for b in batches)
    assert data.sha256() == open_data(None, TEXT_SPECS, batch_size=3, seed=1).sha256()
    assert data.sha256() != open_data(None, TEXT_SPECS, batch_size=3, seed=2).sha256()


def test_synthetic_limit_caps_samples() -> None:
    assert open_data(None, SPECS, batch_size=4, limit=10).count_samples() == 10


def test_static_batch_dimension_overrides_batch_size(tmp_path: Path) -> None:
    specs = parse_input_specs(["image:1x1x4x4"])
    np.savez(tmp_path / "d.npz", image=_images(3))

    data = open_data(str(tmp_path / "d.npz"), specs, batch_size=32)

    assert [b.size for b in data] == [1, 1, 1]


def test_sha256_changes_with_content(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", image=_images(4, seed=0))
    np.savez(tmp_path / "b.npz", image=_images(4, seed=1))

    first = open_data(str(tmp_path / "a.npz"), SPECS).sha256()

    assert first == open_data(str(tmp_path / "a.npz"), SPECS).sha256()
    assert first != open_data(str(tmp_path / "b.npz"), SPECS).sha256()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"img": _images(2)}, "no input 'image'"),
        ({"image": _images(2), "mask": np.ones((2, 4))}, "'mask', which is not a model input"),
        ({"image": np.zeros((2, 4, 4), np.float32)}, "rank 3"),
        ({"image": np.zeros((2, 3, 4, 4), np.float32)}, "size 3 on axis 1"),
        ({"image": np.zeros((2, 1, 4, 4), np.complex64)}, "complex64 but the model wants float32"),
        ({"image": np.full((2, 1, 4, 4), np.nan, np.float32)}, "NaN or Inf"),
        ({"image": _images(2), "labels": np.arange(3)}, "labels has 3 rows"),
    ],
)
def test_validation_errors_name_the_problem(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    # Through a function source: an .npz refuses ragged arrays before validation sees them.
    np.savez(tmp_path / "arrays.npz", **arrays)
    (tmp_path / "bad.py").write_text(
        "import numpy as np\n"
        "def batches():\n"
        f"    return [dict(np.load({str(tmp_path / 'arrays.npz')!r}))]\n"
    )

    with pytest.raises(DataError, match=message) as caught:
        _collect(open_data(f"{tmp_path}/bad.py:batches", SPECS))

    assert "bad.py:batches" in caught.value.message


def test_ragged_npz_is_an_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", image=_images(3), labels=np.arange(2))

    with pytest.raises(DataError, match="differ in length"):
        _collect(open_data(str(tmp_path / "d.npz"), SPECS))


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", image=np.zeros((0, 1, 4, 4), np.float32))

    with pytest.raises(DataError, match="no samples"):
        _collect(open_data(str(tmp_path / "d.npz"), SPECS))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.npz", "does not exist"),
        ("nowhere/data.py:batches", "does not exist"),
        ("sample:no_such_model", "no sample dataset"),
    ],
)
def test_bad_sources_are_data_errors(source: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        _collect(open_data(source, SPECS))


def test_not_an_npz_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("1,2\n")

    with pytest.raises(DataError, match=r"not a \.npz"):
        open_data(str(tmp_path / "d.csv"), SPECS)


def test_function_that_raises_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("def batches():\n    raise RuntimeError('disk gone')\n")

    with pytest.raises(DataError, match="disk gone"):
        _collect(open_data(f"{tmp_path}/boom.py:batches", SPECS))


def test_int64_values_that_overflow_int32_are_refused(tmp_path: Path) -> None:
    specs = parse_input_specs(["ids:batch=2x3:int32"])
    np.savez(tmp_path / "d.npz", ids=np.full((2, 3), 2**40, dtype=np.int64))

    with pytest.raises(DataError, match="do not fit int32"):
        _collect(open_data(str(tmp_path / "d.npz"), specs))
