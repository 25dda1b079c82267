"""Key files: Ed25519 signing key pairs and AES-256 model keys, made and read with
`cryptography`.

- signing: `NAME` (private, PKCS#8 PEM, mode 0600) and `NAME.pub` (SubjectPublicKeyInfo PEM);
  `--sign-key FILE` or `DLOPT_SIGN_KEY` (a path, or the PEM itself, as CI secrets are);
- model encryption: one line `dlopt-aes256gcm:<base64 of 32 random bytes>` (mode 0600);
  `--key-file FILE` or `DLOPT_MODEL_KEY` (a path, or that line).
A key file is never overwritten, and no key is ever printed, logged or recorded: only its id
(a hash) is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from dlopt.errors import KeyFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGN_KEY_ENV = "DLOPT_SIGN_KEY"
MODEL_KEY_ENV = "DLOPT_MODEL_KEY"
MODEL_KEY_PREFIX = "dlopt-aes256gcm:"
MODEL_KEY_BYTES = 32


def write_signing_key_pair(path: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair: `path` (private, 0600) and `path.pub`; returns both paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_key = Ed25519PrivateKey.generate()
    public_path = path.with_name(path.name + ".pub")
    _refuse_existing(path, public_path)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    return path, public_path


def write_model_key(path: Path) -> Path:
    """A new random AES-256 key in `path` (0600)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _refuse_existing(path)
    key = AESGCM.generate_key(bit_length=256)
    _write_new(path, (MODEL_KEY_PREFIX + base64.b64encode(key).decode() + "\n").encode(), 0o600)
    return path


def load_signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    """The private key from `path`, else from DLOPT_SIGN_KEY (a path or a PEM), else None."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data, where = _key_material(path, SIGN_KEY_ENV, b"-----BEGIN")
    if data is None:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(
            f"{where} is not an unencrypted PEM private key", "make one with `dlopt keygen`"
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{where} is not an Ed25519 key", "make one with `dlopt keygen`")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise KeyFileError(
            f"{path} is not a PEM public key", "give the .pub file `dlopt keygen` wrote"
        ) from error
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key", "give the release key's .pub")
    return key


def load_model_key(path: Path | None) -> bytes | None:
    """The AES-256 key from `path`, else from DLOPT_MODEL_KEY (a path or the key line), else
    None."""
    data, where = _key_material(path, MODEL_KEY_ENV, MODEL_KEY_PREFIX.encode())
    if data is None:
        return None
    return parse_model_key(data.decode("utf-8", "replace"), where)


def parse_model_key(text: str, where: str) -> bytes:
    text = text.strip()
    if not text.startswith(MODEL_KEY_PREFIX):
        raise KeyFileError(
            f"{where} is not a dlopt model key", "make one with `dlopt keygen --model-key`"
        )
    try:
        key = base64.b64decode(text[len(MODEL_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as error:
        raise KeyFileError(f"{where} is not a valid dlopt model key") from error
    if len(key) != MODEL_KEY_BYTES:
        raise KeyFileError(f"{where} holds a {len(key) * 8}-bit key, not an AES-256 key")
    return key


def model_key_id(key: bytes) -> str:
    """Names a model key in headers and manifests without revealing it (a domain-separated
    sha256, cut to 16 hex digits)."""
    return hashlib.sha256(b"dlopt model key id\0" + key).hexdigest()[:16]


def _key_material(path: Path | None, env: str, inline_prefix: bytes) -> tuple[bytes | None, str]:
    if path is not None:
        return _read(path), str(path)
    value = os.environ.get(env, "")
    if not value:
        return None, env
    if value.encode().lstrip().startswith(inline_prefix):
        return value.encode(), env
    return _read(Path(value)), f"{env} ({value})"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise KeyFileError(
            f"cannot read key file {path}: {error.strerror}", "check the path"
        ) from error


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise KeyFileError(
                f"{path} exists; dlopt never overwrites a key", "choose another path or remove it"
            )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (a key never exists with looser permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as error:
        raise KeyFileError(f"cannot create {path}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(path, mode)  # exactly `mode`, whatever the umask
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
