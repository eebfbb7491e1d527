"""The ledger's signer: one Ed25519 key signs block headers and checkpoint notes.

Its public half is published as a signed-note verifier key
(`<origin>+<key hash>+<base64(0x01 ‖ public key)>`), which is all an auditor needs.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.note import Ed25519NoteSigner, NoteSigner, NoteVerifier, verifier_key


class Ed25519LedgerSigner:
    """A `LedgerSigner` over an Ed25519 private key, named after the log's origin."""

    def __init__(self, origin: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._note = Ed25519NoteSigner(origin, private_key)
        self._origin = origin

    def __repr__(self) -> str:
        return f"Ed25519LedgerSigner({self.key_id!r})"

    @property
    def key_id(self) -> str:
        return signer_key_id(self._note)

    @property
    def note_signer(self) -> NoteSigner:
        return self._note

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verifier_key(self) -> str:
        return verifier_key(self._origin, self._key.public_key().public_bytes_raw())


def signer_key_id(key: NoteSigner | NoteVerifier) -> str:
    """`<name>+<8 hex key hash>`: the verifier key's prefix, unique per public key."""
    return f"{key.name}+{key.key_hash:08x}"
