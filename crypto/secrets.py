"""Client secrets: generation, scrypt hashing and constant-time verification."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets as _stdlib_secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

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


def _cost_ok(n: int, r: int, p: int) -> bool:
    """Within the bounds above: N a power of two from 2 to 2**20, r and p small."""
    return 2 <= n <= 1 << _MAX_LOG2_N and not n & (n - 1) and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's work factor for new hashes (RFC 7914's N, r and p).

    The default, N = 2**14, r = 8, p = 1, costs 16 MiB and ~50 ms per hash: the
    interactive-login setting the scrypt paper recommends and OWASP's minimum for scrypt.
    It is what the platform uses; see `use_cost` for the one exception.
    """

    n: int = 1 << 14
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if not _cost_ok(self.n, self.r, self.p):
            raise ValueError(
                f"scrypt cost out of bounds: N must be a power of two from 2 to "
                f"2**{_MAX_LOG2_N}, r from 1 to {_MAX_R}, p from 1 to {_MAX_P}"
            )


PRODUCTION_COST = ScryptCost()


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
    """Self-describing scrypt hash: `scrypt$N$r$p$<b64 salt>$<b64 hash>`, at `current_cost()`."""
    cost = _state.cost
    salt = os.urandom(_SALT_SIZE)
    digest = _derive(secret, salt, cost.n, cost.r, cost.p, _HASH_SIZE)
    return _encode(salt, cost.n, cost.r, cost.p, digest)


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
    if not (_cost_ok(n, r, p) and salt):
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


@dataclass(frozen=True)
class _State:
    cost: ScryptCost
    # Timing-sensitive: a well-formed hash at the current cost with a fixed salt, so
    # that dummy_verify runs exactly the code path and scrypt cost of a real verify.
    dummy_encoded: str


def _state_for(cost: ScryptCost) -> _State:
    return _State(cost, _encode(b"pdx-dummy-salt!!", cost.n, cost.r, cost.p, bytes(_HASH_SIZE)))


_state = _state_for(PRODUCTION_COST)


def current_cost() -> ScryptCost:
    """The cost `hash_secret` and `dummy_verify` use in this process."""
    return _state.cost


def use_cost(cost: ScryptCost) -> ScryptCost:
    """Hash new secrets at `cost` in this process from now on; returns the previous cost.

    For tests and benchmarks only (as Django's docs suggest a fast password hasher for
    tests): nothing in the platform calls it, so `pdx run` and every other command hash
    at `PRODUCTION_COST`. Stored hashes carry their own parameters, so verifying them
    is unaffected; the unknown-client dummy verification follows the new cost, so it
    still spends what a real verification of a new hash does.
    """
    global _state
    previous = _state.cost
    _state = _state_for(cost)
    return previous


def dummy_verify(secret: str) -> None:
    """Spend a real verification's work for an unknown client id.

    Timing-sensitive: without it "no such client" returns in microseconds and "wrong
    secret" in ~50 ms, which tells an attacker which client ids exist.
    """
    verify_secret(secret, _state.dummy_encoded)
