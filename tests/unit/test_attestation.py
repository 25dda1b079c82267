"""Attestation envelopes: DSSE encoding, Ed25519 signatures, forgeries refused, subjects."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from dlopt.errors import KeyFileError, VerificationError
from dlopt.gate.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    check_subject,
    open_envelope,
    pae,
    sign,
)
from dlopt.trust.keys import load_public_key, load_signing_key, write_signing_key_pair


def statement(digest: str) -> dict[str, object]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "artifacts/fp32/model.onnx", "digest": {"sha256": digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"verdict": "pass"},
    }


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_signing_key_pair(tmp_path / "release.key")


def test_pae_matches_the_dsse_spec_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_keygen_writes_a_private_key_only_its_owner_can_read(keys: tuple[Path, Path]) -> None:
    private, public = keys

    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(KeyFileError, match="never overwrites"):
        write_signing_key_pair(private)


def test_a_signed_statement_opens_with_its_public_key(keys: tuple[Path, Path]) -> None:
    private, public = keys
    envelope = sign(statement("a" * 64), load_signing_key(private))  # type: ignore[arg-type]

    opened = open_envelope(envelope, load_public_key(public), "attestation.json")

    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert opened["subject"][0]["digest"]["sha256"] == "a" * 64


def test_an_edited_payload_is_refused(keys: tuple[Path, Path]) -> None:
    private, public = keys
    envelope = sign(statement("a" * 64), load_signing_key(private))  # type: ignore[arg-type]
    forged = json.loads(base64.b64decode(envelope["payload"]))
    forged["subject"][0]["digest"]["sha256"] = "b" * 64
    envelope["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()

    with pytest.raises(VerificationError, match="altered, or signed with another key"):
        open_envelope(envelope, load_public_key(public), "attestation.json")


def test_another_key_is_refused(keys: tuple[Path, Path], tmp_path: Path) -> None:
    private, _ = keys
    _, other_public = write_signing_key_pair(tmp_path / "other.key")
    envelope = sign(statement("a" * 64), load_signing_key(private))  # type: ignore[arg-type]

    with pytest.raises(VerificationError, match="no signature by this public key"):
        open_envelope(envelope, load_public_key(other_public), "attestation.json")


def test_an_unsigned_statement_is_refused(keys: tuple[Path, Path]) -> None:
    with pytest.raises(VerificationError, match="is not signed"):
        open_envelope(statement("a" * 64), load_public_key(keys[1]), "attestation.json")


def test_a_file_that_did_not_pass_is_not_a_subject(tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"not what the gate passed")

    with pytest.raises(VerificationError, match="is not an artifact that passed the gate"):
        check_subject(statement("a" * 64), artifact, "attestation.json")


def test_the_signing_key_can_come_from_the_environment_as_pem(
    keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLOPT_SIGN_KEY", keys[0].read_text())

    assert load_signing_key(None) is not None
    monkeypatch.setenv("DLOPT_SIGN_KEY", str(keys[1]))  # a public key is not a signing key
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signing_key(None)
