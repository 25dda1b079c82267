"""Encryption at rest: an artifact's files sealed into one `.enc` file with AES-256-GCM.

Layout (`cryptography`'s AESGCM does all the cryptography; this is only the container):

    b"DLOPTENC" | header length (4 bytes, big-endian) | header (UTF-8 JSON) | ciphertext + tag

The header names the format and its version, the cipher, the key id (a hash of the key, never
the key), the random 96-bit nonce, the inner format and the members (the model file first, then
its companions, e.g. an IR's `.bin`) with their sizes. Everything before the ciphertext is the
associated data: editing the header, truncating the file or flipping a byte of the ciphertext
all fail the tag check. Decryption happens only in memory; the runtimes load from bytes
(dlopt.backends.encrypted). One nonce per file and a fresh random nonce per encryption keep
AES-GCM's nonce rule; AESGCM takes at most 2**31 - 1 bytes, so larger models are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlopt.errors import ArtifactError, DecryptionError

MAGIC = b"DLOPTENC"
FORMAT_NAME = "dlopt-encrypted-artifact"
FORMAT_VERSION = 1
CIPHER = "AES-256-GCM"
SUFFIX = ".enc"
NONCE_BYTES = 12
MAX_PLAINTEXT_BYTES = 2**31 - 1  # AESGCM's limit for one message
_MAX_HEADER_BYTES = 1 << 20
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class EncryptedHeader:
    inner_format: str
    key_id: str
    nonce: bytes
    members: tuple[tuple[str, int], ...]  # (name, size), the model file first
    header_bytes: int  # magic, length and header: the associated data

    @property
    def model_name(self) -> str:
        return self.members[0][0]


def is_encrypted(path: Path) -> bool:
    """Whether `path` starts like an encrypted artifact."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_header(path: Path) -> EncryptedHeader:
    """The header of an encrypted artifact (not authenticated until decryption)."""
    with open(path, "rb") as stream:
        return _parse_header(stream.read(len(MAGIC) + _LENGTH.size + _MAX_HEADER_BYTES), path)


def encrypt_members(
    members: Mapping[str, bytes], inner_format: str, key: bytes, key_id: str
) -> bytes:
    """The encrypted container of `members` (the model file first)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    total = sum(len(data) for data in members.values())
    if total > MAX_PLAINTEXT_BYTES:
        raise ArtifactError(
            f"the model's files hold {total:,} bytes; AES-GCM encrypts at most 2 GiB at once",
            "encryption at rest is for models under 2 GiB",
        )
    nonce = os.urandom(NONCE_BYTES)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "cipher": CIPHER,
        "key_id": key_id,
        "nonce": nonce.hex(),
        "inner_format": inner_format,
        "members": [{"name": name, "size": len(data)} for name, data in members.items()],
    }
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    associated = MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes
    ciphertext = AESGCM(key).encrypt(nonce, b"".join(members.values()), associated)
    return associated + ciphertext


def decrypt_file(path: Path, key: bytes) -> dict[str, bytes]:
    """The plaintext members of an encrypted artifact, in memory (the model file first).

    Raises DecryptionError (exit 2) for a wrong key, a truncated file or any edited byte.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from dlopt.trust.keys import model_key_id

    data = path.read_bytes()
    header = _parse_header(data, path)
    if header.key_id != model_key_id(key):
        raise DecryptionError(
            f"{path} was encrypted with key {header.key_id}, not with the given key "
            f"({model_key_id(key)})",
            "give the key it was encrypted with (--key-file or DLOPT_MODEL_KEY)",
        )
    try:
        plaintext = AESGCM(key).decrypt(
            header.nonce, data[header.header_bytes :], data[: header.header_bytes]
        )
    except InvalidTag as error:
        raise DecryptionError(
            f"{path} fails its authentication check: it was truncated or altered",
            "re-copy the encrypted artifact from its source; never run it as it is",
        ) from error
    sizes = [size for _, size in header.members]
    if sum(sizes) != len(plaintext):
        raise DecryptionError(f"{path}: its member sizes do not add up", "re-create it")
    members: dict[str, bytes] = {}
    offset = 0
    for name, size in header.members:
        members[name] = plaintext[offset : offset + size]
        offset += size
    return members


def plaintext_sha256(members: Mapping[str, bytes]) -> str:
    """sha256 of the model file (the first member), as its own manifest records it."""
    return hashlib.sha256(next(iter(members.values()))).hexdigest()


def _parse_header(data: bytes, path: Path) -> EncryptedHeader:
    prefix = len(MAGIC) + _LENGTH.size
    if not data.startswith(MAGIC) or len(data) < prefix:
        raise DecryptionError(f"{path} is not a dlopt encrypted artifact", "check the path")
    (length,) = _LENGTH.unpack(data[len(MAGIC) : prefix])
    if length > _MAX_HEADER_BYTES or len(data) < prefix + length:
        raise DecryptionError(f"{path} is truncated or damaged (its header is cut off)")
    try:
        header: dict[str, Any] = json.loads(data[prefix : prefix + length])
        members = tuple((str(m["name"]), int(m["size"])) for m in header["members"])
        parsed = EncryptedHeader(
            str(header["inner_format"]),
            str(header["key_id"]),
            bytes.fromhex(header["nonce"]),
            members,
            prefix + length,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise DecryptionError(f"{path} has a damaged header ({type(error).__name__})") from error
    if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise DecryptionError(
            f"{path} is format {header.get('format')} version {header.get('version')}",
            f"this dlopt reads {FORMAT_NAME} version {FORMAT_VERSION}",
        )
    if header.get("cipher") != CIPHER or len(parsed.nonce) != NONCE_BYTES or not members:
        raise DecryptionError(f"{path} has a damaged header (cipher, nonce or members)")
    return parsed


def encrypt_artifact(artifact: Path, key: bytes, output_dir: Path) -> Path:
    """Write `<name>.enc` (the artifact and its companion files, encrypted) and its manifest
    to `output_dir`; returns the encrypted file's path. The input is left as it is."""
    from dlopt.artifacts import (
        Manifest,
        companion_files,
        move_into_place,
        read_manifest,
        sha256_file,
        staging_dir,
        write_manifest,
    )
    from dlopt.sources import detect_file_format
    from dlopt.trust.keys import model_key_id

    inner_format = detect_file_format(artifact)
    if inner_format not in ENCRYPTABLE_FORMATS:
        raise ArtifactError(
            f"{artifact} is a {inner_format} file, which dlopt cannot run from memory",
            f"encrypt an artifact of format {', '.join(ENCRYPTABLE_FORMATS)}",
        )
    companions = companion_files(artifact)
    if inner_format == "onnx" and companions:
        raise ArtifactError(
            f"{artifact} keeps its weights in external data files, which ONNX Runtime cannot "
            "load from memory",
            "encrypt models under 2 GiB saved without external data",
        )
    files = [artifact, *companions]
    members = {file.name: file.read_bytes() for file in files}
    parent = read_manifest(artifact) or {}
    target = output_dir / (artifact.name + SUFFIX)
    with staging_dir(output_dir) as staging:
        staged = staging / target.name
        staged.write_bytes(encrypt_members(members, inner_format, key, model_key_id(key)))
        manifest = Manifest(
            format="encrypted",
            file=target.name,
            precision=str(parent.get("precision", "fp32")),
            inputs=list(parent.get("inputs", [])),
            outputs=list(parent.get("outputs", [])),
            opset=parent.get("opset"),
            source=dict(parent.get("source") or {}),
            parent={
                "path": str(artifact.resolve()),
                "sha256": sha256_file(artifact),
                "format": inner_format,
                "precision": parent.get("precision"),
            },
            recipe={
                "step": "encrypt",
                "cipher": CIPHER,
                "container": f"{FORMAT_NAME}/{FORMAT_VERSION}",
                "key_id": model_key_id(key),
                "inner_format": inner_format,
                "members": list(members),
                # An IR's precision hint (bench reads it from here) and the like.
                "parent_recipe": parent.get("recipe") or {},
            },
        )
        sidecar = write_manifest(staged, manifest)
        move_into_place([sidecar, staged], output_dir)
    return target


def encrypt_in_place(artifact: Path, key: bytes) -> Path:
    """Encrypt an artifact beside itself, then delete its plaintext files (the manifest of the
    plaintext stays: it holds no model bytes and keeps the parent chain verifiable)."""
    from dlopt.artifacts import companion_files

    plaintext = [artifact, *companion_files(artifact)]
    encrypted = encrypt_artifact(artifact, key, artifact.parent)
    for file in plaintext:
        file.unlink()
    return encrypted


ENCRYPTABLE_FORMATS = ("onnx", "openvino_ir", "torchscript", "exported_program")
