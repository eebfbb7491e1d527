"""Sealing the messages two sandboxes exchange through the platform (AES-256-GCM, HKDF-SHA256).

The two parties of a private join share an X25519 agreement seed (`crypto.agreement`,
derived on their nodes); the value party's ciphertexts travel sealed under a key from
it, so the platform that relays them cannot read them even with the requester's help.
Mounted inside the sandbox file by file (`sandbox._bwrap`): it imports only
`cryptography` and `crypto.errors`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import CryptoError

__all__ = ["open_relay", "relay_key", "seal_relay"]


def relay_key(seed: bytes, context: bytes) -> bytes:
    """An AES-256-GCM key for one pair's relayed messages, from their agreement seed."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"pdx:relay/1:" + context
    ).derive(seed)


def seal_relay(key: bytes, counter: int, aad: bytes, data: bytes) -> bytes:
    """AES-256-GCM under `relay_key`; the nonce is the message counter (never reused per key)."""
    return AESGCM(key).encrypt(counter.to_bytes(12, "big"), data, aad)


def open_relay(key: bytes, counter: int, aad: bytes, data: bytes) -> bytes:
    """Inverse of `seal_relay`; `CryptoError` when altered, replayed or out of order."""
    try:
        return AESGCM(key).decrypt(counter.to_bytes(12, "big"), data, aad)
    except InvalidTag:
        raise CryptoError("relayed message failed authentication") from None
