"""Signing the lane's results: its key (HMAC-SHA256, or Ed25519 so the platform can verify
without being able to sign), loaded or generated once, and the signature over a document's
RFC 8785 canonical JSON.

Apart from laned/results.py, laned/config.py uses it (`check_data_files` loads the key at
start-up), so it imports nothing of the lane but its errors and private files: it reads the
`[lane]` table through `SigningIdentity`, what it needs of `laned.config.LaneIdentity`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr

from laned.errors import ConfigError
from laned.private_files import open_private
from protocols.canonical import canonical_json

log = structlog.get_logger("laned.signing")


class SigningIdentity(Protocol):
    """What signing reads of the lane's `[lane]` table (laned.config.LaneIdentity)."""

    @property
    def station(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def signing_algorithm(self) -> Literal["hmac-sha256", "ed25519"]: ...
    @property
    def signing_key_id(self) -> str | None: ...
    @property
    def signing_key(self) -> SecretStr | None: ...
    @property
    def signing_key_file(self) -> Path | None: ...


HMAC_ALGORITHM = "HMAC-SHA256"
ED25519_ALGORITHM = "Ed25519"


@dataclass(frozen=True)
class Signer:
    """The lane's signing key and the name stations know it by (`lane.signing_key_id`)."""

    key_id: str
    hmac_key: bytes | None = None
    private_key: Ed25519PrivateKey | None = None

    @property
    def algorithm(self) -> str:
        return HMAC_ALGORITHM if self.private_key is None else ED25519_ALGORITHM

    def sign(self, document: dict[str, Any]) -> dict[str, str]:
        """The signature block over the RFC 8785 form of `document` without its `signature`."""
        data = signed_bytes(document)
        if self.private_key is not None:
            value = self.private_key.sign(data).hex()
        else:
            assert self.hmac_key is not None
            value = hmac.new(self.hmac_key, data, hashlib.sha256).hexdigest()
        return {"algorithm": self.algorithm, "key_id": self.key_id, "value": value}


def _write_private_file(path: Path, data: bytes) -> None:
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as fh:
        fh.write(data)


def load_signer(config: SigningIdentity) -> Signer:
    """The lane's signer: its key from the config, its key file, or one generated once in the
    state dir (HMAC: a random text key; Ed25519: a PEM private key and its public key beside)."""
    key_id = config.signing_key_id or f"{config.station}-{config.lane}"
    if config.signing_key is not None:
        material = config.signing_key.get_secret_value().encode()
    else:
        generated = "signing.key" if config.signing_algorithm == "hmac-sha256" else "signing-ed25519.pem"
        path = config.signing_key_file or (config.state_dir / generated)
        if not path.exists():
            _generate_key(config, path)
        material = path.read_bytes()
    if config.signing_algorithm == "hmac-sha256":
        return Signer(key_id=key_id, hmac_key=material.strip())
    try:
        private_key = serialization.load_pem_private_key(material, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("lane.signing_key", [f"not an unencrypted PEM private key: {exc}"]) from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ConfigError("lane.signing_key", [f"an Ed25519 key is needed, found {type(private_key).__name__}"])
    return Signer(key_id=key_id, private_key=private_key)


def _generate_key(config: SigningIdentity, path: Path) -> None:
    if config.signing_algorithm == "hmac-sha256":
        _write_private_file(path, secrets.token_hex(32).encode() + b"\n")
        log.warning("signing_key_generated", path=str(path), hint="give this key to the station to verify results")
        return
    private_key = Ed25519PrivateKey.generate()
    _write_private_file(path, private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public_path = path.with_name(path.stem + ".pub.pem")
    public_path.unlink(missing_ok=True)
    _write_private_file(public_path, public_key_pem(private_key))
    log.warning("signing_key_generated", path=str(path), public_key=str(public_path),
                hint="give the public key to the station to verify results")


def public_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def signed_bytes(document: dict[str, Any]) -> bytes:
    """What the signature covers: RFC 8785 canonical JSON of the document without `signature`."""
    return canonical_json({k: v for k, v in document.items() if k != "signature"})


def sign(document: dict[str, Any], key: bytes, key_id: str = "lane") -> dict[str, str]:
    """The HMAC-SHA256 signature block over `document` with `key`."""
    return Signer(key_id=key_id, hmac_key=key).sign(document)


def verify(document: dict[str, Any], key: bytes | Ed25519PublicKey) -> bool:
    """What a station does: True if the result was signed with `key` (the HMAC key, or the
    lane's Ed25519 public key) and not changed since."""
    signature = document.get("signature") or {}
    value = str(signature.get("value", ""))
    data = signed_bytes(document)
    if isinstance(key, Ed25519PublicKey):
        if signature.get("algorithm") != ED25519_ALGORITHM:
            return False
        try:
            key.verify(bytes.fromhex(value), data)
        except (ValueError, InvalidSignature):
            return False
        return True
    expected = hmac.new(key, data, hashlib.sha256).hexdigest()
    return signature.get("algorithm") == HMAC_ALGORITHM and hmac.compare_digest(expected, value)
