"""The ledger's signer: one Ed25519 key signs block headers and checkpoint notes.

Its public half is published as a signed-note verifier key
(`<origin>+<key hash>+<base64(0x01 ‖ public key)>`), which is all an auditor needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from crypto import SignatureAlgorithm, load_verifying_key
from ledger.errors import LedgerError
from ledger.note import (
    ALG_ED25519,
    Ed25519NoteSigner,
    Ed25519Private,
    NoteKey,
    NoteSigner,
    NoteVerifier,
    ed25519_key_pair,
    register_verifier_algorithm,
)

__all__ = ["SM2_KEY_TYPE", "Ed25519LedgerSigner", "KmsLedgerSigner", "signer_key_id"]


class _NoteLedgerSigner:
    """A `LedgerSigner` whose key is the note key named after the log's origin."""

    def __init__(self, note: Ed25519NoteSigner | _NoteKey) -> None:
        self._note = note

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_id!r})"

    @property
    def key_id(self) -> str:
        return signer_key_id(self._note)

    @property
    def note_signer(self) -> NoteSigner:
        return self._note

    def sign(self, message: bytes) -> bytes:
        return self._note.sign(message)

    def verifier_key(self) -> str:
        return self._note.verifier_key()


class Ed25519LedgerSigner(_NoteLedgerSigner):
    """A `LedgerSigner` over an Ed25519 private key, named after the log's origin."""

    def __init__(self, origin: str, private_key: Ed25519Private) -> None:
        super().__init__(Ed25519NoteSigner(origin, ed25519_key_pair(private_key)))


def signer_key_id(key: NoteSigner | NoteVerifier) -> str:
    """`<name>+<8 hex key hash>`: the verifier key's prefix, unique per public key."""
    return f"{key.name}+{key.key_hash:08x}"


# C2SP signed-note signature type 0xff ("no assigned byte"), followed by an identifier:
# SM2 with SM3 and the default user id (GB/T 32918.2), public key 0x04 ‖ x ‖ y.
SM2_KEY_TYPE = b"\xffsm2-sm3"


class _KmsSigner(Protocol):
    """What `crypto.KeyStore.signer` returns (structurally)."""

    @property
    def public_key(self) -> bytes: ...

    @property
    def signature_algorithm(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class _NoteKey(NoteKey):
    """A note signer/verifier over any `crypto.suites.signature` algorithm."""

    __slots__ = ("_sign", "_verify")

    def __init__(
        self,
        name: str,
        encoded: bytes,
        sign: Callable[[bytes], bytes] | None,
        verify: Callable[[bytes, bytes], bool],
    ) -> None:
        super().__init__(name, encoded)
        self._sign = sign
        self._verify = verify

    def sign(self, msg: bytes) -> bytes:
        if self._sign is None:
            raise LedgerError("a verifier cannot sign")
        return self._sign(msg)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        return self._verify(msg, sig)


def _sm2_verifier(name: str, key: bytes) -> NoteVerifier:
    ident = SM2_KEY_TYPE[1:]
    if not key.startswith(ident):
        raise ValueError("type 0xff key is not an SM2 key")
    public = load_verifying_key(SignatureAlgorithm.SM2_SM3, key[len(ident) :])
    return _NoteKey(name, b"\xff" + key, None, public.verify)


register_verifier_algorithm(0xFF, _sm2_verifier)


class KmsLedgerSigner(_NoteLedgerSigner):
    """A `LedgerSigner` over the KMS's ledger-signing key: Ed25519 (intl) or SM2 (sm)."""

    def __init__(self, origin: str, signer: _KmsSigner) -> None:
        algorithm = str(signer.signature_algorithm)
        if algorithm == SignatureAlgorithm.ED25519:
            encoded = bytes([ALG_ED25519]) + signer.public_key
        elif algorithm == SignatureAlgorithm.SM2_SM3:
            encoded = SM2_KEY_TYPE + signer.public_key
        else:
            raise LedgerError(f"no signed-note encoding for {algorithm} ledger keys")
        public = load_verifying_key(SignatureAlgorithm(algorithm), signer.public_key)
        super().__init__(_NoteKey(origin, encoded, signer.sign, public.verify))
