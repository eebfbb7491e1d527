"""Shamir k-of-n secret sharing over GF(2^8), byte-wise, with an integrity check on recovery."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable, Sequence
from typing import Final

from crypto.errors import DuplicateShares, InconsistentShares, TooFewShares

# Shamir, "How to share a secret", CACM 22(11), 1979, over the field GF(2^8) of AES
# (FIPS 197 4.2: reduction polynomial x^8 + x^4 + x^3 + x + 1 = 0x11B), applied to every
# byte independently with its own random polynomial of degree k-1.
#
# What is shared is payload = secret ‖ SHA-256(_TAG_LABEL ‖ split_id ‖ secret). A share:
#
#   b"PDXH" ‖ version (1 B) ‖ threshold k (1 B) ‖ x (1 B, 1..255) ‖ split_id (16 B) ‖ f(x)
#
# where f(x) is len(payload) bytes. The header is not secret. combine() checks that all
# shares carry the same version, k, split_id and length, that their x are distinct and
# that there are at least k, interpolates f(0) from all of them, and accepts it only if
# the tag matches: a corrupted share, a changed x or k, or a share of another split (even
# with a forged split_id) makes the interpolated payload wrong and the tag fail, except
# with probability 2**-256. Fewer than k shares reveal nothing about the payload (each
# byte is uniformly distributed given any k-1 evaluations), tag included.
#
# Timing: multiplication is a 256-byte table lookup indexed by secret bytes
# (bytes.translate), so this is not constant-time against a cache-timing attacker on the
# same machine. It runs rarely (key ceremonies), on hosts the key holders control.

MAGIC: Final = b"PDXH"
VERSION: Final = 1
SPLIT_ID_SIZE: Final = 16
TAG_SIZE: Final = 32
MAX_SHARES: Final = 255
_HEADER = struct.Struct(">4sBBB16s")
HEADER_SIZE: Final = _HEADER.size
_TAG_LABEL = b"pdx shamir v1 tag\x00"

_POLY = 0x11B


def _gf_mul_slow(a: int, b: int) -> int:
    """Carry-less multiply and reduce modulo 0x11B (FIPS 197 4.2.1)."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= _POLY
        b >>= 1
    return product


# _MUL[c] maps every byte v to c·v, so `data.translate(_MUL[c])` scales a whole vector.
_MUL: Final = tuple(bytes(_gf_mul_slow(c, v) for v in range(256)) for c in range(256))
# Multiplicative inverses; 0 has none and is never inverted (x coordinates are distinct).
_INV: Final = tuple(
    [0] + [next(b for b in range(1, 256) if _MUL[a][b] == 1) for a in range(1, 256)]
)


def gf_mul(a: int, b: int) -> int:
    """a·b in GF(2^8) with the AES polynomial."""
    return _MUL[a][b]


def gf_inv(a: int) -> int:
    """a^-1 in GF(2^8); `ZeroDivisionError` for 0."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return _INV[a]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _tag(split_id: bytes, secret: bytes) -> bytes:
    return hashlib.sha256(_TAG_LABEL + split_id + secret).digest()


def split(
    secret: bytes,
    k: int,
    n: int,
    *,
    randbytes: Callable[[int], bytes] = secrets.token_bytes,
) -> list[bytes]:
    """Split `secret` into `n` shares of which any `k` recover it and `k - 1` reveal nothing.

    2 <= k <= n <= 255. `randbytes` is the randomness source (default `secrets`), a
    parameter so that tests can be deterministic; it must be a CSPRNG in production.
    """
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("the secret must be a non-empty byte string")
    if not 2 <= k <= n <= MAX_SHARES:
        raise ValueError(f"need 2 <= k <= n <= {MAX_SHARES}")
    split_id = randbytes(SPLIT_ID_SIZE)
    payload = secret + _tag(split_id, secret)
    # coefficients[0] is the payload itself (f(0)); the others are uniformly random.
    coefficients = [payload] + [randbytes(len(payload)) for _ in range(k - 1)]
    if len(split_id) != SPLIT_ID_SIZE or any(len(c) != len(payload) for c in coefficients):
        raise ValueError("randbytes returned the wrong number of bytes")
    shares = []
    for x in range(1, n + 1):
        # Horner's rule, one whole byte vector at a time.
        value = coefficients[-1]
        for coefficient in reversed(coefficients[:-1]):
            value = _xor(value.translate(_MUL[x]), coefficient)
        shares.append(_HEADER.pack(MAGIC, VERSION, k, x, split_id) + value)
    return shares


def combine(shares: Sequence[bytes]) -> bytes:
    """Recover the secret from at least k shares of one `split`.

    Raises `TooFewShares` below the threshold, `DuplicateShares` when two shares have
    the same x, and `InconsistentShares` for malformed shares, shares of different
    splits, or a result that fails the integrity check (a corrupted or forged share).
    """
    if not shares:
        raise TooFewShares("no shares given")
    parsed: dict[int, bytes] = {}
    header: tuple[int, bytes, int] | None = None
    for share in shares:
        if not isinstance(share, bytes) or len(share) < HEADER_SIZE + 1 + TAG_SIZE:
            raise InconsistentShares("malformed share")
        magic, version, k, x, split_id = _HEADER.unpack_from(share)
        if magic != MAGIC or version != VERSION or not 2 <= k <= MAX_SHARES or x == 0:
            raise InconsistentShares("malformed share")
        this = (k, split_id, len(share))
        if header is None:
            header = this
        elif this != header:
            raise InconsistentShares("shares are of different splits or lengths")
        if x in parsed:
            raise DuplicateShares("two shares have the same index", index=x)
        parsed[x] = share[HEADER_SIZE:]
    assert header is not None
    k, split_id, _ = header
    if len(parsed) < k:
        raise TooFewShares(f"{len(parsed)} shares given, {k} needed", given=len(parsed), needed=k)
    # Lagrange interpolation at 0 through every given point: with more than k shares,
    # one inconsistent share moves f(0) and fails the tag, so all of them are checked.
    xs = list(parsed)
    payload = bytes(len(parsed[xs[0]]))
    for i in xs:
        # l_i(0) = prod_{j != i} x_j / (x_j - x_i); subtraction is XOR in GF(2^8).
        numerator, denominator = 1, 1
        for j in xs:
            if j != i:
                numerator = _MUL[numerator][j]
                denominator = _MUL[denominator][j ^ i]
        coefficient = _MUL[numerator][_INV[denominator]]
        payload = _xor(payload, parsed[i].translate(_MUL[coefficient]))
    secret, tag = payload[:-TAG_SIZE], payload[-TAG_SIZE:]
    if not hmac.compare_digest(tag, _tag(split_id, secret)):
        raise InconsistentShares("the shares do not reconstruct a consistent secret")
    return secret
