"""A party's signing key, made and kept on the party's side; the platform gets the public half.

Ed25519 (RFC 8032) via `cryptography`. The private key lives in memory, or in a file
under the config dir (`$PDX_CONFIG_DIR/partykeys/<org>.pem`, mode 0600, PKCS#8, optionally
passphrase-encrypted). `register` sends the public half to `/v1/market/parties/{org}/keys`;
the key id the platform answers with is the SHA-256 of `ed25519:` and the raw public key,
computed here too so a party can check it. What a provider signs for each decision is
built by `run_message` / `release_message` (the server's `signed_approvals` module).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdx_client.config import config_dir
from pdx_client.session import Session

__all__ = [
    "PartyKey",
    "output_digest",
    "release_message",
    "run_message",
]

ALGORITHM = "ed25519"


def run_message(query_digest: str, approve: bool = True) -> str:
    """What a run decision signs: the `query_digest` of GET /v1/computations/{id}/query."""
    return query_digest if approve else f"reject:{query_digest}"


def output_digest(output: Any) -> str:
    """`sha256:<hex>` of a reviewed output (GET .../review), as the platform sealed it."""
    body = json.dumps(output, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def release_message(computation_id: str, output: Any, approve: bool = True) -> str:
    """What a release decision signs: the computation and the digest of what was reviewed."""
    message = f"{computation_id}:release:{output_digest(output)}"
    return message if approve else f"reject:{message}"


def _default_path(org_id: str) -> Path:
    safe = "".join(c for c in org_id if c.isalnum() or c in "-_")
    return config_dir() / "partykeys" / f"{safe}.pem"


class PartyKey:
    """An organisation's Ed25519 signing key; only `public_b64` ever leaves this object."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> PartyKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_raw(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode()

    @property
    def key_id(self) -> str:
        """The id the platform gives this key (sha256 over `ed25519:` and the raw key)."""
        return "sha256:" + hashlib.sha256(ALGORITHM.encode() + b":" + self.public_raw).hexdigest()

    def sign(self, message: str) -> dict[str, str]:
        """`{key_id, signature}` over `message` (UTF-8), as the approval routes take it."""
        signature = self._private.sign(message.encode("utf-8"))
        return {"key_id": self.key_id, "signature": base64.b64encode(signature).decode()}

    def save(
        self, path: Path | None = None, *, org_id: str = "", passphrase: str | None = None
    ) -> Path:
        """Write the private key (PKCS#8 PEM) readable by this user only; the path."""
        path = path or _default_path(org_id or "party")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode())
            if passphrase
            else serialization.NoEncryption()
        )
        pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls, path: Path | None = None, *, org_id: str = "", passphrase: str | None = None
    ) -> PartyKey:
        path = path or _default_path(org_id or "party")
        key = serialization.load_pem_private_key(
            path.read_bytes(), passphrase.encode() if passphrase else None
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key)

    @classmethod
    def load_or_create(
        cls, org_id: str, *, path: Path | None = None, passphrase: str | None = None
    ) -> PartyKey:
        """The organisation's key from the config dir, made and saved there the first time."""
        path = path or _default_path(org_id)
        if path.exists():
            return cls.load(path, passphrase=passphrase)
        key = cls.generate()
        key.save(path, passphrase=passphrase)
        return key

    def register(self, session: Session, org_id: str) -> dict[str, Any]:
        """Send the public half to the platform; the party record it answers with.

        Registering the same key again is harmless (the platform keeps one row per key).
        """
        body: dict[str, Any] = session.post(
            f"/v1/market/parties/{org_id}/keys",
            {"algorithm": ALGORITHM, "public_key": self.public_b64},
        )
        return body
