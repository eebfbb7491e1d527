"""Pairwise key agreement (X25519, RFC 7748) and a seed derived from it (HKDF-SHA256, RFC 5869).

Used by provider nodes to agree on the seeds of the masks that cancel in an aggregate
(`sandbox.masks`): each node holds an X25519 key for one job, the platform relays only
the public halves, and two nodes derive the same 32-byte seed bound to the job.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from crypto.relay import x25519_shared

__all__ = ["agreement_keypair", "agreement_seed"]


def agreement_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair as (private 32 bytes, public 32 bytes)."""
    sk = X25519PrivateKey.generate()
    private = sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return private, sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def agreement_seed(private: bytes, peer_public: bytes, info: bytes) -> bytes:
    """HKDF-SHA256(X25519(private, peer_public), info) as 32 bytes; both ends get the same.

    An all-zero shared secret (a small-order peer key, RFC 7748 §6.1) is refused.
    """
    shared = x25519_shared(private, peer_public)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
