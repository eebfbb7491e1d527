"""Tests for crypto.shamir: GF(2^8) per FIPS 197, k-of-n recovery, detection of bad share sets."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crypto import shamir
from crypto.errors import (
    CryptoError,
    DuplicateShares,
    InconsistentShares,
    InvalidShares,
    TooFewShares,
)

VECTORS = Path(__file__).parent / "vectors"
FIELD: dict[str, Any] = json.loads((VECTORS / "shamir_gf256_fips197.json").read_text())
SECRET = bytes.fromhex("00ff") + os.urandom(30)  # leading and trailing zero bytes matter too
H = shamir.HEADER_SIZE


@pytest.fixture(scope="module")
def shares() -> list[bytes]:
    return shamir.split(SECRET, 3, 5)


# -- the field ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", FIELD["products"], ids=[c["name"] for c in FIELD["products"]])
def test_gf_mul_fips197(case: dict[str, str]) -> None:
    a, b, product = (int(case[k], 16) for k in ("a", "b", "product"))
    assert shamir.gf_mul(a, b) == product
    assert shamir.gf_mul(b, a) == product


def _affine(b: int) -> int:
    # FIPS 197 5.1.1 (5.1): b'_i = b_i ^ b_(i+4) ^ b_(i+5) ^ b_(i+6) ^ b_(i+7) ^ c_i, c = 0x63.
    out = 0
    for i in range(8):
        bit = 0
        for j in (0, 4, 5, 6, 7):
            bit ^= (b >> ((i + j) % 8)) & 1
        out |= bit << i
    return out ^ 0x63


@pytest.mark.parametrize("case", FIELD["sbox"], ids=[c["name"] for c in FIELD["sbox"]])
def test_gf_inverse_through_the_aes_sbox(case: dict[str, str]) -> None:
    x = int(case["x"], 16)
    inverse = 0 if x == 0 else shamir.gf_inv(x)  # the S-box maps 0 to affine(0)
    assert _affine(inverse) == int(case["s"], 16)


def test_every_nonzero_element_has_an_inverse() -> None:
    for a in range(1, 256):
        assert shamir.gf_mul(a, shamir.gf_inv(a)) == 1
    with pytest.raises(ZeroDivisionError):
        shamir.gf_inv(0)


# -- recovery -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 4, 5])
def test_every_subset_of_at_least_k_recovers(shares: list[bytes], size: int) -> None:
    for subset in itertools.combinations(shares, size):
        assert shamir.combine(list(subset)) == SECRET
        assert shamir.combine(list(reversed(subset))) == SECRET


def test_every_pair_is_too_few(shares: list[bytes]) -> None:
    for pair in itertools.combinations(shares, 2):
        with pytest.raises(TooFewShares) as raised:
            shamir.combine(list(pair))
        assert raised.value.extensions == {"given": 2, "needed": 3}


def test_one_or_no_share_is_too_few(shares: list[bytes]) -> None:
    with pytest.raises(TooFewShares):
        shamir.combine(shares[:1])
    with pytest.raises(TooFewShares):
        shamir.combine([])


def test_share_layout(shares: list[bytes]) -> None:
    assert len(shares) == 5
    for x, share in enumerate(shares, start=1):
        assert share[:4] == shamir.MAGIC
        assert share[4] == shamir.VERSION and share[5] == 3 and share[6] == x
        assert len(share) == H + len(SECRET) + shamir.TAG_SIZE
    assert len({share[7:H] for share in shares}) == 1  # one split id


def test_fewer_than_k_shares_do_not_contain_the_secret(shares: list[bytes]) -> None:
    for share in shares:
        assert SECRET[2:] not in share


@pytest.mark.parametrize(("k", "n"), [(2, 2), (2, 3), (5, 9), (255, 255)])
def test_thresholds(k: int, n: int) -> None:
    secret = os.urandom(17)
    made = shamir.split(secret, k, n)
    picked = random.sample(made, k)
    assert shamir.combine(picked) == secret
    with pytest.raises(TooFewShares):
        shamir.combine(picked[1:])


@pytest.mark.parametrize("size", [1, 32, 1000])
def test_secret_sizes(size: int) -> None:
    secret = os.urandom(size)
    assert shamir.combine(shamir.split(secret, 2, 3)[1:]) == secret


def _naive_mul(a: int, b: int) -> int:
    # Independent of the module: schoolbook carry-less product, then reduce by 0x11B.
    product = 0
    for i in range(8):
        if (b >> i) & 1:
            product ^= a << i
    for bit in range(14, 7, -1):
        if (product >> bit) & 1:
            product ^= 0x11B << (bit - 8)
    return product


def _seeded() -> Callable[[int], bytes]:
    stream = random.Random(7)
    return lambda n: bytes(stream.randrange(256) for _ in range(n))


def test_shares_are_polynomial_evaluations() -> None:
    secret = b"key ceremony"
    made = shamir.split(secret, 3, 4, randbytes=_seeded())
    replay = _seeded()  # the same draws, in split's documented order
    split_id = replay(shamir.SPLIT_ID_SIZE)
    a0 = secret + hashlib.sha256(b"pdx shamir v1 tag\x00" + split_id + secret).digest()
    a1, a2 = replay(len(a0)), replay(len(a0))
    for share in made:
        assert share[7:H] == split_id
        x = share[6]
        x2 = _naive_mul(x, x)
        # f(x) = a0 + a1·x + a2·x², byte by byte, in GF(2^8).
        expected = bytes(
            c0 ^ _naive_mul(c1, x) ^ _naive_mul(c2, x2)
            for c0, c1, c2 in zip(a0, a1, a2, strict=True)
        )
        assert share[H:] == expected
    assert shamir.combine(made[1:]) == secret


# -- detection ----------------------------------------------------------------------------


def _with(share: bytes, index: int, value: int) -> bytes:
    return share[:index] + bytes([value]) + share[index + 1 :]


def test_corrupted_share_is_detected(shares: list[bytes]) -> None:
    for position in (H, H + len(SECRET) - 1, len(shares[0]) - 1):
        bad = _with(shares[0], position, shares[0][position] ^ 0x01)
        with pytest.raises(InconsistentShares):
            shamir.combine([bad, shares[1], shares[2]])
        # A corrupted extra share is caught too: every given share is interpolated.
        with pytest.raises(InconsistentShares):
            shamir.combine([shares[1], shares[2], shares[3], bad])


def test_changed_index_is_detected(shares: list[bytes]) -> None:
    moved = _with(shares[0], 6, 9)
    with pytest.raises(InconsistentShares):
        shamir.combine([moved, shares[1], shares[2]])


def test_lowered_threshold_is_detected(shares: list[bytes]) -> None:
    lowered = [_with(s, 5, 2) for s in shares[:2]]
    with pytest.raises(InconsistentShares):
        shamir.combine(lowered)


def test_mismatched_headers_are_detected(shares: list[bytes]) -> None:
    with pytest.raises(InconsistentShares):
        shamir.combine([_with(shares[0], 5, 4), shares[1], shares[2]])


def test_shares_of_another_split_are_detected(shares: list[bytes]) -> None:
    other = shamir.split(SECRET, 3, 5)
    with pytest.raises(InconsistentShares):
        shamir.combine([shares[0], shares[1], other[2]])
    # Even with the split id forged to match, the tag fails.
    forged = other[2][:7] + shares[0][7:H] + other[2][H:]
    with pytest.raises(InconsistentShares):
        shamir.combine([shares[0], shares[1], forged])


def test_different_lengths_are_detected(shares: list[bytes]) -> None:
    with pytest.raises(InconsistentShares):
        shamir.combine([shares[0], shares[1], shares[2] + b"\x00"])


def test_duplicates_are_refused(shares: list[bytes]) -> None:
    with pytest.raises(DuplicateShares) as raised:
        shamir.combine([shares[0], shares[1], shares[0]])
    assert raised.value.extensions == {"index": 1}
    with pytest.raises(DuplicateShares):
        shamir.combine([shares[0], shares[1], _with(shares[0], H, shares[0][H] ^ 1)])


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: s[: H + shamir.TAG_SIZE], id="no secret byte"),
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: b"XXXX" + s[4:], id="magic"),
        pytest.param(lambda s: _with(s, 4, 2), id="version"),
        pytest.param(lambda s: _with(s, 5, 1), id="threshold 1"),
        pytest.param(lambda s: _with(s, 6, 0), id="index 0"),
        pytest.param(lambda s: "text", id="not bytes"),
    ],
)
def test_malformed_shares(shares: list[bytes], mutate: Any) -> None:
    with pytest.raises(InconsistentShares):
        shamir.combine([mutate(shares[0]), shares[1], shares[2]])


def test_errors_share_one_root_with_stable_codes() -> None:
    codes = {
        TooFewShares: "shares-too-few",
        DuplicateShares: "shares-duplicate",
        InconsistentShares: "shares-inconsistent",
    }
    for error, code in codes.items():
        assert issubclass(error, InvalidShares) and issubclass(error, CryptoError)
        assert error.code == code


@pytest.mark.parametrize(
    ("secret", "k", "n"),
    [(b"", 2, 3), (b"s", 1, 3), (b"s", 4, 3), (b"s", 2, 256), ("s", 2, 3)],
)
def test_split_arguments(secret: Any, k: int, n: int) -> None:
    with pytest.raises(ValueError):
        shamir.split(secret, k, n)


def test_split_refuses_a_short_random_source() -> None:
    with pytest.raises(ValueError):
        shamir.split(b"s", 2, 3, randbytes=lambda n: bytes(n - 1))
