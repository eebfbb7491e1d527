"""The KMS's secp256k1 chain-signing key, handed raw to the EVM anchoring module only.

Ethereum transactions are signed with a *recoverable* secp256k1 ECDSA signature over a
Keccak-256 digest of the RLP-encoded transaction (EIP-155/EIP-1559); SM2, Ed25519 and
P-256 are not usable there. The key is generated, wrapped under the root key, stored,
rotated and destroyed like every other KMS key (purpose `chain-signing`).

Trade-off, stated: every other signing key signs only through `crypto`'s surface.
This one leaves `crypto` as its 32-byte scalar, because transaction encoding and the
recovery id belong to `eth-account`; re-implementing them here would put a second,
unreviewed Ethereum signer in the code base. `ledger.anchor` is the one caller; it
keeps the scalar in memory only, never logs it, and signs with `eth-account`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from crypto.keystore import KeyStore
from crypto.lifecycle import KeyPurpose

__all__ = ["ChainKey", "unsafe_export_chain_key"]


@dataclass(frozen=True)
class ChainKey:
    """One chain-signing key version: its KMS name, public point and raw private scalar."""

    key_id: str
    version: int
    public_key: bytes  # 0x04 ‖ x ‖ y (SEC 1 2.3.3)
    private_scalar: bytes = field(repr=False)


def unsafe_export_chain_key(keystore: KeyStore, session: Session, *, now: datetime) -> ChainKey:
    """The active chain-signing key, generated on first use, with its private scalar.

    `Unsafe`: the scalar leaves the KMS (see the module docstring). The caller commits.
    """
    signer = keystore.signer(session, purpose=KeyPurpose.CHAIN_SIGNING, now=now)
    scalar = signer._pair.private_bytes()  # noqa: SLF001 (crypto's own Signer)
    return ChainKey(signer.key_id, signer.version, signer.public_key, scalar)
