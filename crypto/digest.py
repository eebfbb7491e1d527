"""Content digests: SHA-256 and SM3 (GB/T 32905-2016) of a byte stream in one pass."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes

Buffer = bytes | bytearray | memoryview


def _bytes_view(data: Buffer) -> memoryview:
    # `cryptography` only takes byte-format buffers; a typed memoryview ("I", "d") is
    # re-viewed as bytes without copying.
    return memoryview(data).cast("B")


def sha256(data: Buffer) -> bytes:
    """SHA-256 (FIPS 180-4) of `data`."""
    return hashlib.sha256(data).digest()


def sm3(data: Buffer) -> bytes:
    """SM3 (GB/T 32905-2016) of `data`."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(_bytes_view(data))
    return digest.finalize()


class ContentDigest:
    """Both evidence digests of one stream, updated together (PCE-05: "SHA-256 or SM3").

    SHA-256 comes from `hashlib`, which releases the GIL on large updates; SM3 from
    `cryptography`. `hexdigests` may be called at any point without ending the stream.
    """

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._sm3 = hashes.Hash(hashes.SM3())

    def update(self, data: Buffer) -> None:
        view = _bytes_view(data)
        self._sha256.update(view)
        self._sm3.update(view)

    def hexdigests(self) -> dict[str, str]:
        """`{"sha256": ..., "sm3": ...}` in lowercase hex, of everything so far."""
        return {
            "sha256": self._sha256.hexdigest(),
            "sm3": self._sm3.copy().finalize().hex(),
        }
