"""Key-wrap blob format: version byte ‖ 12-byte random nonce ‖ AES-256-GCM ciphertext+tag."""

from __future__ import annotations

import os

from crypto.errors import InvalidCiphertext
from crypto.suites.aead import NONCE_SIZE, TAG_SIZE, AeadSuite, new_aead

# Version 1 = AES-256-GCM under a 256-bit wrapping key with a random 96-bit nonce.
# Random nonces are safe here because each wrapping key wraps few messages (NIST
# SP 800-38D 8.3 limits a key to 2**32 random-nonce invocations).
_VERSION_AES_256_GCM = 1
_HEADER = 1 + NONCE_SIZE

WRAP_KEY_SIZE = 32


def wrap(wrapping_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt `plaintext` under `wrapping_key`, bound to `aad`."""
    nonce = os.urandom(NONCE_SIZE)
    sealed = new_aead(AeadSuite.AES_256_GCM, wrapping_key).encrypt(nonce, plaintext, aad)
    return bytes((_VERSION_AES_256_GCM,)) + nonce + sealed


def unwrap(wrapping_key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Decrypt a blob from `wrap`; `InvalidCiphertext` for any failure."""
    if len(blob) < _HEADER + TAG_SIZE or blob[0] != _VERSION_AES_256_GCM:
        raise InvalidCiphertext()
    view = memoryview(blob)
    aead = new_aead(AeadSuite.AES_256_GCM, wrapping_key)
    return aead.decrypt(view[1:_HEADER], view[_HEADER:], aad)


def encode_aad(label: bytes, *fields: bytes | str | int | None) -> bytes:
    """Unambiguous associated data: a label, then each field length-prefixed.

    Plain concatenation ("id ‖ object_ref") would let two different field splits
    produce the same bytes; a 4-byte length before each field rules that out. `None`
    is encoded distinctly from the empty string.
    """
    parts = [len(label).to_bytes(4, "big"), label]
    for field in fields:
        if field is None:
            parts.append(b"\xff\xff\xff\xff")
            continue
        if isinstance(field, int):
            raw = field.to_bytes(8, "big", signed=True)
        elif isinstance(field, str):
            raw = field.encode("utf-8")
        else:
            raw = field
        parts.append(len(raw).to_bytes(4, "big"))
        parts.append(raw)
    return b"".join(parts)
