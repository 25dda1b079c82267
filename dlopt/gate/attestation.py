"""The gate's release attestation: an in-toto Statement v1, signed in a DSSE envelope.

`attestation.json` says which artifacts passed the gate (subjects: name and sha256) and why
(predicate: the verdict per variant and backend, the config's and the data's sha256, the tool
versions). A deploy job that trusts the release key runs
`dlopt verify --attestation attestation.json --public-key release.pub MODEL` and refuses any
file whose digest is not a passing subject.

Why DSSE with Ed25519: DSSE signs the exact payload bytes (no JSON canonicalization to get
wrong) bound to their type through the pre-authentication encoding, and it is the envelope
in-toto attestations and Sigstore's tooling read; Ed25519 (from `cryptography`) has small keys,
deterministic signatures and no parameters to choose. The envelope's encoding is a few lines of
the DSSE spec (`pae`); every cryptographic step is `cryptography`'s. Without a key the file is
the bare Statement: a record, not something a deploy job can trust.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.artifacts import atomic_write_text, sha256_file, tool_versions
from dlopt.errors import VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from dlopt.gate.config import GateConfig

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://dlopt.dev/attestation/release-gate/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
ATTESTATION_FILE = "attestation.json"


def attest_gate(
    report: dict[str, Any],
    output_dir: Path,
    config: GateConfig,
    signing_key: Ed25519PrivateKey | None = None,
) -> Path:
    """Write `attestation.json` for a gate report (signed when a key is given); its path."""
    statement = gate_statement(report, output_dir, config)
    document = sign(statement, signing_key) if signing_key is not None else statement
    path = output_dir / ATTESTATION_FILE
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def gate_statement(report: dict[str, Any], output_dir: Path, config: GateConfig) -> dict[str, Any]:
    """The in-toto Statement: passing artifacts as subjects, verdicts and inputs as predicate."""
    verdicts = _verdicts(report["gates"])
    subjects = []
    for variant in report["variants"]:
        results = [v for (name, _), v in verdicts.items() if name == variant["name"]]
        passed = "pass" in results and set(results) <= {"pass", "skipped"}
        if passed and variant.get("artifact"):
            subjects += _subjects(output_dir, Path(variant["artifact"]))
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "verdict": report["verdict"],
            "exitCode": report["exit_code"],
            "results": [
                {"variant": name, "backend": backend, "verdict": verdict}
                for (name, backend), verdict in verdicts.items()
            ],
            "config": {"name": config.path.name, "sha256": sha256_file(config.path)},
            "data": _data_digests(config, output_dir, report),
            "report": {"name": "report.json", "sha256": sha256_file(output_dir / "report.json")},
            "toolVersions": tool_versions(),
            "createdUtc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def _verdicts(gates: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """One verdict per (variant, backend): fail beats inconclusive beats pass beats skipped.
    A recipe failure (backend "-") counts for the variant on every backend."""
    order = ["skipped", "pass", "inconclusive", "fail"]
    verdicts: dict[tuple[str, str], str] = {}
    for gate in gates:
        key = (gate["variant"], gate["backend"])
        previous = verdicts.get(key, "skipped")
        verdicts[key] = max(previous, gate["verdict"], key=order.index)
    return verdicts


def _subjects(output_dir: Path, artifact: Path) -> list[dict[str, Any]]:
    from dlopt.artifacts import companion_files

    path = artifact if artifact.is_absolute() else output_dir / artifact
    files = [path, *companion_files(path)]
    return [
        {
            "name": file.relative_to(output_dir).as_posix(),
            "digest": {"sha256": sha256_file(file)},
        }
        for file in files
    ]


def _data_digests(config: GateConfig, output_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    """sha256 of the evaluation and calibration data as streamed (dlopt.data), by name."""
    from dlopt.artifacts import read_manifest
    from dlopt.data import open_data
    from dlopt.specs import TensorSpec
    from dlopt.trust.provenance import portable

    reference = next((v for v in report["variants"] if v["name"] == "fp32"), None)
    manifest = read_manifest(output_dir / reference["artifact"]) if reference else None
    specs = [TensorSpec.from_dict(item) for item in (manifest or {}).get("inputs", [])]
    digests: dict[str, Any] = {}
    for role, source, limit in (
        ("evaluation", config.data.evaluation, config.data.evaluation_limit),
        ("calibration", config.data.calibration, config.data.calibration_limit),
    ):
        if source is None or not specs:
            continue
        data = open_data(source, specs, config.bench.batch_size, limit)
        digests[role] = {"source": portable(source, output_dir.resolve()), "sha256": data.sha256()}
    return digests


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of a payload and its type (the signed bytes)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign(statement: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The statement in a DSSE envelope signed with `private_key`."""
    payload = json.dumps(statement, indent=1).encode("utf-8")
    signature = private_key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": key_id(private_key.public_key()), "sig": base64.b64encode(signature).decode()}
        ],
    }


def open_envelope(envelope: Any, public_key: Ed25519PublicKey, where: str) -> dict[str, Any]:
    """The Statement inside a signed envelope; VerificationError unless a signature by
    `public_key` covers exactly this payload and type."""
    from cryptography.exceptions import InvalidSignature

    if not isinstance(envelope, dict) or "payload" not in envelope:
        raise VerificationError(
            f"{where} is not signed (no DSSE envelope): nothing ties it to a release key",
            "run the gate with --sign-key (or DLOPT_SIGN_KEY)",
        )
    try:
        payload = _b64decode(str(envelope["payload"]))
        payload_type = str(envelope.get("payloadType", ""))
        signatures = [_b64decode(str(item.get("sig", ""))) for item in envelope["signatures"]]
    except (KeyError, TypeError, AttributeError, binascii.Error, ValueError) as error:
        raise VerificationError(f"{where} is not a valid DSSE envelope ({error})") from error
    for signature in signatures:
        try:
            public_key.verify(signature, pae(payload_type, payload))
        except InvalidSignature:
            continue
        break
    else:
        raise VerificationError(
            f"{where}: no signature by this public key (key id {key_id(public_key)}) covers "
            "its content: it was altered, or signed with another key",
            "check that --public-key is the release key; never deploy on a failed signature",
        )
    if payload_type != PAYLOAD_TYPE:
        raise VerificationError(f"{where}: payload type {payload_type!r} is not an in-toto one")
    statement: dict[str, Any] = json.loads(payload)
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != (
        PREDICATE_TYPE
    ):
        raise VerificationError(f"{where} does not hold a dlopt release-gate statement")
    return statement


def check_subject(statement: dict[str, Any], artifact: Path, where: str) -> str:
    """The subject name of `artifact` (by its sha256) in a verified statement; raises
    VerificationError when the gate did not pass a file with these bytes."""
    digest = sha256_file(artifact)
    for subject in statement.get("subject", []):
        if (subject.get("digest") or {}).get("sha256") == digest:
            return str(subject.get("name"))
    raise VerificationError(
        f"{artifact} (sha256 {digest[:16]}...) is not an artifact that passed the gate in {where}",
        "deploy only what the gate passed",
    )


def key_id(public_key: Ed25519PublicKey) -> str:
    """sha256 of the raw public key: names the key in envelopes and messages."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, as DSSE requires verifiers to accept."""
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)
