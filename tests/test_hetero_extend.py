"""A host's powers of z + U_h are the binomial expansion, bit for bit, and reuse |u|'s powers.

`Host.extend` adds no randomness, so its ciphertexts are fixed integers mod n²: whatever
order it multiplies in, they must equal Π_j [[z^j]]^(C(k,j)·u^(k−j)) · (1 + u^k·n) computed
term by term (`expected`, Python's pow with signed exponents). The second test pins the
cost: one exponentiation by |u| per (base, power) pair, D(D−1)/2 a row, none by the larger
exponents C(k,j)·u^(k−j).
"""

from __future__ import annotations

import math
import random
from typing import Any

import gmpy2  # type: ignore[import-untyped]
import numpy as np
import pytest

from sandbox import hetero_lr, paillier

_RNG = random.Random(20)
_N = int(gmpy2.next_prime(_RNG.getrandbits(512) | 1 << 511)) * int(
    gmpy2.next_prime(_RNG.getrandbits(512) | 1 << 511)
)
_N2 = _N * _N
U_VALUES = [0, 1, -1, 2, -2, 3, -5, 65536, -65536, 2**20 - 3, -(2**20) + 7, 2**30 + 1]
U_VALUES += [_RNG.randint(-(2**21), 2**21) for _ in range(12)]


def expected(cts: list[int], u: int, degree: int) -> list[int]:
    """[[(z + u)^k]] for k = 1..D from [[z^j]] (cts[j − 1]) by the binomial theorem."""
    out = []
    for k in range(1, degree + 1):
        acc = (1 + (u**k % _N) * _N) % _N2  # the j = 0 term, u^k, in the clear
        for j in range(1, k + 1):
            acc = acc * pow(cts[j - 1], math.comb(k, j) * u ** (k - j), _N2) % _N2
        out.append(acc)
    return out


def host_with(us: list[int], degree: int) -> hetero_lr.Host:
    """A host whose quantised partial sums U_h are exactly `us` (one feature, weight 1)."""
    cfg = hetero_lr.HeteroConfig(key_bits=1024, degree=degree)
    host = hetero_lr.Host(
        np.asarray([[u / 2**cfg.scale_bits] for u in us]), cfg, paillier.public_key_from_n(_N)
    )
    host.w = np.ones(1)
    assert host.fx.quantise(host.x @ host.w) == us
    return host


def random_powers(rows: int, degree: int) -> list[int]:
    cts = []
    for _ in range(rows * (degree + 1)):
        c = _RNG.randrange(2, _N2)
        assert math.gcd(c, _N) == 1
        cts.append(c)
    return cts


@pytest.mark.parametrize("degree", [1, 3, 5, 7])
def test_extend_is_the_binomial_expansion_bit_for_bit(degree: int) -> None:
    per = degree + 1
    cts = random_powers(len(U_VALUES), degree)
    got = host_with(U_VALUES, degree).extend(hetero_lr.LrMessage("lr.guest.powers", tuple(cts)))
    assert got.step == "lr.host.powers"
    want: list[int] = []
    for i, u in enumerate(U_VALUES):
        row = cts[i * per : (i + 1) * per]
        want.extend(expected(row[:degree], u, degree))
        want.append(row[degree])  # the (c0 − y)·T term, untouched
    assert list(got.ciphertexts) == want


@pytest.mark.parametrize("degree", [3, 5])
def test_extend_raises_each_power_once_by_u(degree: int, monkeypatch: Any) -> None:
    us = [0, 12345, -54321, 2**20 - 3]
    host = host_with(us, degree)
    msg = hetero_lr.LrMessage("lr.guest.powers", tuple(random_powers(len(us), degree)))
    exponents: list[int] = []
    real = gmpy2.powmod

    def counting(b: Any, k: Any, m: Any) -> Any:
        exponents.append(int(k))
        return real(b, k, m)

    monkeypatch.setattr(gmpy2, "powmod", counting)
    host.extend(msg)
    pairs = degree * (degree - 1) // 2
    assert exponents == [abs(u) for u in us[1:] for _ in range(pairs)]


def test_lincomb_of_few_ciphertexts_is_the_product_of_signed_powers() -> None:
    for size in range(1, 6):
        cts = [_RNG.randrange(2, 3 * _N2) for _ in range(size)]  # some not reduced mod n²
        coeffs = [_RNG.choice([0, 1, -1, 2, _RNG.randint(-(2**100), 2**100)]) for _ in cts]
        want = 1
        for c, k in zip(cts, coeffs, strict=True):
            want = want * pow(c, k, _N2) % _N2
        assert hetero_lr._lincomb([gmpy2.mpz(c) for c in cts], coeffs, gmpy2.mpz(_N2)) == want, (
            coeffs
        )
