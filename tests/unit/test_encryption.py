"""The encrypted container: round trip, and every kind of damage refused with DecryptionError."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dlopt.errors import DecryptionError, KeyFileError
from dlopt.trust.encryption import MAGIC, decrypt_file, encrypt_members, read_header
from dlopt.trust.keys import load_model_key, model_key_id, write_model_key

MEMBERS = {"model.xml": b"<net name='m'/>" * 10, "model.bin": os.urandom(4096)}


@pytest.fixture
def key(tmp_path: Path) -> bytes:
    loaded = load_model_key(write_model_key(tmp_path / "model.key"))
    assert loaded is not None
    return loaded


def encrypted(tmp_path: Path, key: bytes) -> Path:
    path = tmp_path / "model.xml.enc"
    path.write_bytes(encrypt_members(MEMBERS, "openvino_ir", key, model_key_id(key)))
    return path


def test_round_trip_keeps_every_member_in_order(tmp_path: Path, key: bytes) -> None:
    path = encrypted(tmp_path, key)

    assert decrypt_file(path, key) == MEMBERS
    header = read_header(path)
    assert header.inner_format == "openvino_ir" and header.model_name == "model.xml"
    assert header.key_id == model_key_id(key)
    assert MEMBERS["model.bin"] not in path.read_bytes()


def test_two_encryptions_use_two_nonces(tmp_path: Path, key: bytes) -> None:
    first = encrypt_members(MEMBERS, "openvino_ir", key, model_key_id(key))
    second = encrypt_members(MEMBERS, "openvino_ir", key, model_key_id(key))

    assert first != second


def test_the_model_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = write_model_key(tmp_path / "model.key")

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(KeyFileError, match="never overwrites"):
        write_model_key(path)


def test_a_wrong_key_names_both_key_ids(tmp_path: Path, key: bytes) -> None:
    path = encrypted(tmp_path, key)
    other = load_model_key(write_model_key(tmp_path / "other.key"))
    assert other is not None

    with pytest.raises(DecryptionError, match="was encrypted with key"):
        decrypt_file(path, other)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda data: data[:-10], "fails its authentication check"),
        (lambda data: data[:40], "truncated or damaged"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "fails its authentication check"),
        (lambda data: data.replace(b'"openvino_ir"', b'"torchscript"'), "authentication"),
        (lambda data: b"X" + data[1:], "not a dlopt encrypted artifact"),
    ],
    ids=["truncated", "cut header", "ciphertext bit flipped", "header edited", "bad magic"],
)
def test_damage_is_refused(tmp_path: Path, key: bytes, damage: object, fragment: str) -> None:
    path = encrypted(tmp_path, key)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]

    with pytest.raises(DecryptionError, match=fragment):
        decrypt_file(path, key)


def test_the_key_can_come_from_the_environment(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = (tmp_path / "model.key").read_text().strip()
    monkeypatch.setenv("DLOPT_MODEL_KEY", line)

    assert load_model_key(None) == key
    monkeypatch.setenv("DLOPT_MODEL_KEY", str(tmp_path / "model.key"))
    assert load_model_key(None) == key
    assert MAGIC == b"DLOPTENC"
