"""Model sources: references, file-format sniffing, factories and weights."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from dlopt.errors import SourceError, WeightsError
from dlopt.sources import detect_file_format, load_torch_model, parse_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TINY = FIXTURES / "tiny_models.py"


def test_file_factory_loads_in_eval_mode_with_default_inputs() -> None:
    loaded = load_torch_model(f"{TINY}:dict_output_net")

    assert isinstance(loaded.module, torch.nn.Module)
    assert not loaded.module.training
    assert [str(spec) for spec in loaded.default_inputs] == ["x:batch=2x4:float32"]


def test_module_factory_reference_is_parsed() -> None:
    ref = parse_source("collections:OrderedDict")

    assert (ref.kind, ref.module, ref.attribute) == ("factory", "collections", "OrderedDict")


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        (f"{TINY}:not_a_module", "returned a int, not a torch.nn.Module"),
        (f"{TINY}:raising_factory", "cannot build this one"),
        (f"{TINY}:missing", "no 'missing'"),
        ("does/not/exist.py:make", "does not exist"),
        ("no_such_module_xyz:make", "importing no_such_module_xyz failed"),
        ("plain-words", "is not a file"),
    ],
)
def test_bad_factories_raise_source_error(reference: str, fragment: str) -> None:
    with pytest.raises(SourceError) as caught:
        load_torch_model(reference)

    assert fragment in caught.value.one_line()


def test_weights_round_trip_and_hash(tmp_path: Path) -> None:
    model = load_torch_model(f"{TINY}:dict_output_net").module
    with torch.no_grad():
        model.fc.bias.fill_(0.5)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)

    loaded = load_torch_model(f"{TINY}:dict_output_net", weights=weights)

    assert torch.all(loaded.module.fc.bias == 0.5)
    assert loaded.weights_sha256 is not None and len(loaded.weights_sha256) == 64


def test_weights_that_do_not_fit_name_the_keys(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(5, 4), "fc.bias": torch.zeros(5)}, weights)

    with pytest.raises(WeightsError, match=r"do not fit the model.*size mismatch"):
        load_torch_model(f"{TINY}:dict_output_net", weights=weights)


class _Payload:
    """Pickled by reference to a class: weights_only=True must refuse it."""


def test_pickle_with_objects_is_refused_with_the_override_named(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(3, 4), "payload": _Payload()}, weights)

    with pytest.raises(WeightsError) as caught:
        load_torch_model(f"{TINY}:dict_output_net", weights=weights)

    assert "could run code" in caught.value.one_line()
    assert "--trust-pickle" in caught.value.one_line()


def test_file_formats_are_recognised_by_content(tmp_path: Path) -> None:
    traced = torch.jit.trace(torch.nn.Linear(2, 2), torch.ones(1, 2))
    script_path = tmp_path / "model.onnx"  # TorchScript behind an ONNX name
    torch.jit.save(traced, str(script_path))
    state_path = tmp_path / "weights.pt"
    torch.save({"a": torch.ones(1)}, state_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04garbage")

    with pytest.raises(SourceError, match=r"named \.onnx but is a TorchScript file"):
        detect_file_format(script_path)
    assert detect_file_format(script_path.rename(tmp_path / "model.ts")) == "torchscript"
    assert detect_file_format(state_path) == "state_dict"
    with pytest.raises(SourceError, match="is empty"):
        detect_file_format(empty)
    with pytest.raises(SourceError, match="damaged zip"):
        detect_file_format(broken)
    with pytest.raises(SourceError, match="is a folder"):
        detect_file_format(tmp_path)


def test_state_dict_given_as_model_says_to_use_a_factory(tmp_path: Path) -> None:
    state_path = tmp_path / "weights.pt"
    torch.save({"a": torch.ones(1)}, state_path)

    with pytest.raises(SourceError, match="holds weights"):
        load_torch_model(str(state_path))


def test_torchscript_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.ones(1, 2)), str(path))

    loaded = load_torch_model(str(path))

    assert loaded.ref.kind == "torchscript"
    assert loaded.module(torch.ones(1, 2)).shape == (1, 2)


def test_zip_that_is_not_torch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")

    with pytest.raises(SourceError, match="not a torch model"):
        detect_file_format(path)
