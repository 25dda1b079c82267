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


def _declared_only_npz(path: Path, name: str, shape: tuple[int, ...], payload: bytes) -> str:
    """An .npz whose member declares `shape` in its header but holds only `payload`."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + payload)
    return str(path)


def _zeros_bomb(path: Path, name: str, shape: tuple[int, ...]) -> str:
    """A deflated .npz of real zeros: a few hundred KB that inflate to `shape` float32."""
    import zipfile

    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open(f"{name}.npy", "w", force_zip64=True) as stream,
    ):
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        remaining = int(np.prod(shape)) * 4
        block = bytes(1 << 22)
        while remaining:
            stream.write(block[: min(remaining, len(block))])
            remaining -= min(remaining, len(block))
    return str(path)


def test_a_header_that_does_not_fit_the_model_is_refused_before_any_row_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlopt import data_files

    bomb = _zeros_bomb(tmp_path / "bomb.npz", "image", (2, 1, 4, 1 << 22))  # 128 MiB of zeros
    assert Path(bomb).stat().st_size < 1 << 20

    def no_rows(*args: object) -> None:
        raise AssertionError("data was read before the header was checked")

    monkeypatch.setattr(data_files._NpyMember, "__getitem__", no_rows)
    with pytest.raises(DataError, match=r"size 4194304 on axis 3 but the model wants 4"):
        open_data(bomb, SPECS).count_samples()


def test_a_header_that_declares_more_than_the_file_holds_is_refused(tmp_path: Path) -> None:
    forged = _declared_only_npz(tmp_path / "forged.npz", "image", (1 << 30, 1, 4, 4), bytes(64))

    with pytest.raises(DataError, match=r"declares shape \(1073741824, 1, 4, 4\)"):
        open_data(forged, SPECS).count_samples()


def test_npy_folder_headers_are_checked_before_mapping(tmp_path: Path) -> None:
    np.save(tmp_path / "image.npy", np.zeros((3, 1, 4, 5), dtype=np.float32))
    with pytest.raises(DataError, match="size 5 on axis 3"):
        open_data(str(tmp_path), SPECS).count_samples()
    (tmp_path / "image.npy").unlink()
    np.save(tmp_path / "image.npy", np.array([object()] * 2), allow_pickle=True)
    with pytest.raises(DataError, match="object array") as caught:
        open_data(str(tmp_path), SPECS).count_samples()
    assert "\n" not in caught.value.one_line()


def test_rows_are_read_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlopt import data_files

    monkeypatch.setattr(data_files, "CHUNK_BYTES", 3 * 16 * 4)  # three samples of 1x4x4 float32
    images = _images(10)
    np.savez(tmp_path / "eval.npz", image=images)
    read: list[int] = []
    original = data_files._NpyMember.__getitem__

    def spy(self: object, rows: slice) -> np.ndarray:
        result = original(self, rows)  # type: ignore[arg-type]
        read.append(len(result))
        return result

    monkeypatch.setattr(data_files._NpyMember, "__getitem__", spy)

    batches = _collect(open_data(str(tmp_path / "eval.npz"), SPECS, batch_size=10))

    assert max(read) == 3 and sum(read) == 10
    np.testing.assert_array_equal(batches[0].inputs["image"], images)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0.0, np.nan, 1.0]), "labels contain NaN or Inf"),
        (np.array([0.0, np.inf, 1.0]), "labels contain NaN or Inf"),
        (np.array(["a", "b", "c"]), "labels are <U1, not numbers"),
    ],
)
def test_labels_must_be_finite_numbers(tmp_path: Path, labels: np.ndarray, message: str) -> None:
    np.savez(tmp_path / "eval.npz", image=_images(3), labels=labels)

    with pytest.raises(DataError, match=message) as caught:
        open_data(str(tmp_path / "eval.npz"), SPECS).count_samples()
    assert str(tmp_path / "eval.npz") in caught.value.one_line()


def test_object_arrays_from_a_function_are_refused(tmp_path: Path) -> None:
    (tmp_path / "objects.py").write_text(
        "import numpy as np\ndef batches():\n    return [{'image': np.array([object()] * 2)}]\n"
    )

    with pytest.raises(DataError, match="holds Python objects"):
        open_data(f"{tmp_path / 'objects.py'}:batches", SPECS).count_samples()
