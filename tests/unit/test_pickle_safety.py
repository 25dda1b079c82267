"""The static pickle and .pt2 checks: refused payloads, accepted tensors; nothing unpickled."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from dlopt.errors import ConfigError
from dlopt.gate.config import parse_gate_config
from dlopt.trust.pickle_safety import UnsafeModelError, check_exported_program, pickle_problem
from tests.fixtures import evil_files


class _Call:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.getcwd, ())


def test_a_tensor_checkpoint_passes() -> None:
    buffer = io.BytesIO()
    torch.save(((torch.randn(2, 3),), {"scale": torch.ones(1)}), buffer)

    assert pickle_problem(buffer.getvalue()) is None


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_raw_pickle_calling_a_function_is_refused_whatever_its_protocol(protocol: int) -> None:
    problem = pickle_problem(pickle.dumps(_Call(), protocol=protocol))

    assert problem is not None
    assert "posix.getcwd" in problem or "cannot check" in problem  # protocol 4: STACK_GLOBAL


def test_bytes_after_a_pickle_are_refused() -> None:
    assert pickle_problem(pickle.dumps(1, protocol=2) + pickle.dumps(_Call(), protocol=2)) == (
        "has data after its pickle"
    )


def test_aotinductor_native_code_in_a_pt2_is_refused(tmp_path: Path) -> None:
    clean = evil_files.tiny_pt2(tmp_path / "tiny.pt2")
    with zipfile.ZipFile(clean, "a") as archive:
        archive.writestr("tiny/data/aotinductor/model/model.so", b"\x7fELF")

    with pytest.raises(UnsafeModelError) as caught:
        check_exported_program(clean.read_bytes(), str(clean))

    assert "AOTInductor native code" in caught.value.one_line()


def test_a_clean_pt2_passes(tmp_path: Path) -> None:
    clean = evil_files.tiny_pt2(tmp_path / "tiny.pt2")

    check_exported_program(clean.read_bytes(), str(clean))


def test_gate_config_has_the_trust_pickle_key(tmp_path: Path) -> None:
    raw = {"model": {"source": "m.py:f", "trust_pickle": True}}

    assert parse_gate_config(raw, tmp_path / "dlopt.toml").model.trust_pickle is True
    with pytest.raises(ConfigError, match=r"model\.trust_pickle"):
        parse_gate_config({"model": {"source": "m.py:f", "trust_pickle": "yes"}}, tmp_path / "x")
