"""Sealing the messages two sandboxes exchange through the platform (AES-256-GCM, HKDF-SHA256).

The two parties of a private join share an X25519 agreement seed (`crypto.agreement`,
derived on their nodes); the value party's ciphertexts travel sealed under a key from
it, so the platform that relays them cannot read them even with the requester's help.
The requester of a federated job seals each global model for each provider's node the
same way (`fl_model_key`: the node's signed X25519 key, the requester's ephemeral one and
a secret challenge the node sent under the requester's Paillier key). Mounted inside the
sandbox file by file (`sandbox._bwrap`): it imports only `cryptography` and `crypto.errors`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import CryptoError

__all__ = ["fl_model_key", "open_relay", "relay_key", "seal_relay", "x25519_shared"]


def x25519_shared(private: bytes, peer_public: bytes) -> bytes:
    """X25519(private, peer_public); `CryptoError` for a bad key or an all-zero secret.

    `cryptography` refuses the all-zero shared secret of a small-order key (RFC 7748 §6.1).
    """
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(peer_public)
        )
    except ValueError:
        raise CryptoError("key agreement failed") from None


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


def fl_model_key(private: bytes, peer_public: bytes, challenge: bytes, context: bytes) -> bytes:
    """The key sealing a federated job's global models for one node (`pdx_client.flseal`).

    HKDF-SHA256 with the node's secret `challenge` as salt over X25519(private, peer_public)
    (the TLS 1.3 way of combining a pre-shared secret with (EC)DHE): whoever lacks either
    the agreement's private half or the challenge cannot derive it. An all-zero shared
    secret (a small-order key, RFC 7748 §6.1) and a challenge under 128 bits are refused.
    Must equal `pdx_client.flseal.model_key` (the SDK imports no server package).
    """
    if len(challenge) < 16:
        raise CryptoError("the challenge is too short")
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=challenge, info=b"pdx:fl-model/1:" + context
    ).derive(x25519_shared(private, peer_public))
