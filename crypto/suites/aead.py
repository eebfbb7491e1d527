"""AEAD suites by number: AES-256-GCM (international) and SM4-GCM (GB/T 32907-2016)."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import InvalidCiphertext

Buffer = bytes | bytearray | memoryview

NONCE_SIZE = 12
TAG_SIZE = 16


class AeadSuite(IntEnum):
    """Suite numbers as written into stream headers; never renumber."""

    AES_256_GCM = 1
    SM4_GCM = 2


KEY_SIZES: dict[AeadSuite, int] = {
    AeadSuite.AES_256_GCM: 32,
    AeadSuite.SM4_GCM: 16,  # SM4 has a 128-bit key only (GB/T 32907-2016 5.1).
}


class Aead(Protocol):
    """A keyed AEAD: 12-byte nonce, 16-byte tag appended to the ciphertext."""

    def encrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer) -> bytes: ...

    def decrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer) -> bytes: ...


class _AesGcm:
    """AES-256-GCM through `AESGCM`, whose one-shot calls are the fast path."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer) -> bytes:
        return self._aead.encrypt(nonce, data, associated_data)

    def decrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer) -> bytes:
        try:
            return self._aead.decrypt(nonce, data, associated_data)
        except InvalidTag:
            raise InvalidCiphertext() from None


class _Sm4Gcm:
    """SM4 in GCM mode (RFC 8998 2.1 names it for TLS), via the `Cipher` interface."""

    def __init__(self, key: bytes) -> None:
        self._algorithm = algorithms.SM4(key)

    def encrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer) -> bytes:
        encryptor = Cipher(self._algorithm, modes.GCM(bytes(nonce))).encryptor()
        encryptor.authenticate_additional_data(associated_data)
        ciphertext = encryptor.update(data) + encryptor.finalize()
        return ciphertext + encryptor.tag

    def decrypt(self, nonce: Buffer, data: Buffer, associated_data: Buffer) -> bytes:
        if len(data) < TAG_SIZE:
            raise InvalidCiphertext()
        view = memoryview(data)
        tag = bytes(view[-TAG_SIZE:])
        decryptor = Cipher(self._algorithm, modes.GCM(bytes(nonce), tag)).decryptor()
        decryptor.authenticate_additional_data(associated_data)
        # `update` releases plaintext before the tag is checked; nothing leaves this
        # function until `finalize` has verified it.
        plaintext = decryptor.update(view[:-TAG_SIZE])
        try:
            return plaintext + decryptor.finalize()
        except InvalidTag:
            raise InvalidCiphertext() from None


def new_aead(suite: AeadSuite, key: bytes) -> Aead:
    """Key an AEAD of `suite`; `ValueError` if the key has the wrong length for it."""
    if len(key) != KEY_SIZES[suite]:
        raise ValueError(f"suite {suite.name} needs a {KEY_SIZES[suite]}-byte key")
    if suite is AeadSuite.AES_256_GCM:
        return _AesGcm(key)
    return _Sm4Gcm(key)
