"""Client secrets: generation, scrypt hashing and constant-time verification."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets as _stdlib_secrets

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

# RFC 7914 parameters: N = 2**14, r = 8, p = 1 costs 16 MiB and ~50 ms per hash, the
# interactive-login setting the scrypt paper recommends and OWASP's minimum for scrypt.
_N = 1 << 14
_R = 8
_P = 1
_SALT_SIZE = 16
_HASH_SIZE = 32
_SCHEME = "scrypt"

# Bounds on parameters read back from a stored string, so a corrupted or hostile row
# cannot make one verification take gigabytes of memory or minutes of CPU.
_MAX_LOG2_N = 20
_MAX_R = 32
_MAX_P = 16
_MIN_HASH_SIZE = 16
_MAX_HASH_SIZE = 64


def _b64encode(data: bytes) -> str:
    # PHC string format convention: standard base64 alphabet without padding.
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("non-ASCII base64")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(
        secret.encode("utf-8", "surrogatepass")
    )


def _encode(salt: bytes, n: int, r: int, p: int, digest: bytes) -> str:
    return f"{_SCHEME}${n}${r}${p}${_b64encode(salt)}${_b64encode(digest)}"


def generate_secret() -> str:
    """A new client secret: 32 random bytes, base64url (43 characters)."""
    return _stdlib_secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Self-describing scrypt hash: `scrypt$N$r$p$<b64 salt>$<b64 hash>`."""
    salt = os.urandom(_SALT_SIZE)
    return _encode(salt, _N, _R, _P, _derive(secret, salt, _N, _R, _P, _HASH_SIZE))


def _parse(encoded: str) -> tuple[bytes, int, int, int, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return None
    try:
        # Digits only: int() alone would accept "+8", " 8" or "1_6".
        if not all(part.isascii() and part.isdigit() for part in parts[1:4]):
            return None
        n, r, p = (int(part) for part in parts[1:4])
        salt = _b64decode(parts[4])
        digest = _b64decode(parts[5])
    except (ValueError, binascii.Error):
        return None
    if n < 2 or n & (n - 1) or n > 1 << _MAX_LOG2_N:
        return None
    if not (1 <= r <= _MAX_R and 1 <= p <= _MAX_P and salt):
        return None
    if not _MIN_HASH_SIZE <= len(digest) <= _MAX_HASH_SIZE:
        return None
    return salt, n, r, p, digest


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether `secret` matches `encoded` (from `hash_secret`); False if `encoded` is malformed."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    salt, n, r, p, expected = parsed
    actual = _derive(secret, salt, n, r, p, len(expected))
    # Timing-sensitive: compare_digest takes the same time wherever the bytes differ.
    return hmac.compare_digest(actual, expected)


# Timing-sensitive: a well-formed hash with the current parameters and a fixed salt,
# so that dummy_verify runs exactly the code path and scrypt cost of a real verify.
_DUMMY_ENCODED = _encode(b"pdx-dummy-salt!!", _N, _R, _P, bytes(_HASH_SIZE))


def dummy_verify(secret: str) -> None:
    """Spend a real verification's work for an unknown client id.

    Timing-sensitive: without it "no such client" returns in microseconds and "wrong
    secret" in ~50 ms, which tells an attacker which client ids exist.
    """
    verify_secret(secret, _DUMMY_ENCODED)
