"""Crypto error hierarchy: every failure `crypto` raises on purpose, with a stable code."""

from __future__ import annotations

from typing import Any, ClassVar


class CryptoError(Exception):
    """Root of every error `crypto` raises on purpose.

    `code` is stable and becomes the problem `type` at the gateway edge; `detail` is
    safe to show a client (never contains key material or plaintext); `extensions`
    carries structured facts (key ids, purposes) for the log or problem document.
    """

    code: ClassVar[str] = "crypto-error"
    title: ClassVar[str] = "Cryptographic error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions: dict[str, Any] = extensions


class KeyNotFound(CryptoError):
    code = "key-not-found"
    title = "Key not found"


class KeyPurposeMismatch(CryptoError):
    code = "key-purpose-mismatch"
    title = "Key used for a purpose it was not created for"


class KeyStoreUnavailable(CryptoError):
    code = "keystore-unavailable"
    title = "Key store unavailable"


class InvalidCiphertext(CryptoError):
    """Every decryption or authentication failure, deliberately opaque.

    Like Fernet's `InvalidToken`: the same code and detail whether the key, the
    nonce, the associated data, the framing or the tag was wrong, so that an
    attacker probing with modified ciphertexts learns nothing about which check
    failed (STYLE habit 5).
    """

    code = "invalid-ciphertext"
    title = "Invalid ciphertext"

    def __init__(
        self, detail: str = "ciphertext could not be decrypted", **extensions: Any
    ) -> None:
        super().__init__(detail, **extensions)
