"""HMAC (RFC 2104; GB/T 15852.2-2012) with SHA-256 or SM3, and a constant-time verify."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from crypto.errors import InvalidKey, UnsupportedAlgorithm

Buffer = bytes | bytearray | memoryview

# Both hashes give 32-byte tags; pdx neither emits nor accepts truncated tags.
TAG_SIZE: Final = 32
# RFC 2104 2: keys shorter than the hash output weaken the MAC. Keys pdx generates are
# 32 bytes; shorter ones are accepted only so that published test vectors can be run.
RECOMMENDED_KEY_SIZE: Final = 32


class MacAlgorithm(StrEnum):
    """MAC algorithms by their stable names."""

    HMAC_SHA256 = "hmac-sha256"
    HMAC_SM3 = "hmac-sm3"


def _hash(algorithm: MacAlgorithm) -> hashes.HashAlgorithm:
    if algorithm is MacAlgorithm.HMAC_SHA256:
        return hashes.SHA256()
    return hashes.SM3()


def _algorithm(algorithm: MacAlgorithm | str) -> MacAlgorithm:
    try:
        return MacAlgorithm(algorithm)
    except ValueError:
        raise UnsupportedAlgorithm("unknown MAC algorithm", algorithm=str(algorithm)) from None


class Mac:
    """An HMAC key of one algorithm; `repr` hides the key."""

    __slots__ = ("_algorithm", "_hash", "_key")

    def __init__(self, algorithm: MacAlgorithm | str, key: bytes) -> None:
        self._algorithm = _algorithm(algorithm)
        if not isinstance(key, bytes) or not key:
            raise InvalidKey("an HMAC key is a non-empty byte string")
        self._key = key
        self._hash = _hash(self._algorithm)

    @property
    def algorithm(self) -> MacAlgorithm:
        return self._algorithm

    def tag(self, data: Buffer) -> bytes:
        """The 32-byte HMAC of `data`."""
        context = hmac.HMAC(self._key, self._hash)
        context.update(data)
        return context.finalize()

    def verify(self, data: Buffer, tag: bytes) -> bool:
        """True only if `tag` is the full 32-byte HMAC of `data`.

        Timing-sensitive: the comparison is `HMAC.verify`, constant-time in the tag
        (OpenSSL CRYPTO_memcmp), so a forger learns nothing from how long a reject takes.
        """
        context = hmac.HMAC(self._key, self._hash)
        context.update(data)
        try:
            context.verify(bytes(tag))
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Mac(algorithm={self._algorithm.value!r}, key=<hidden>)"


def mac(algorithm: MacAlgorithm | str, key: bytes, data: Buffer) -> bytes:
    """One-shot `Mac(algorithm, key).tag(data)`."""
    return Mac(algorithm, key).tag(data)


def verify_mac(algorithm: MacAlgorithm | str, key: bytes, data: Buffer, tag: bytes) -> bool:
    """One-shot `Mac(algorithm, key).verify(data, tag)`."""
    return Mac(algorithm, key).verify(data, tag)
