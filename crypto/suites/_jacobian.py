"""Jacobian point doubling on a short-Weierstrass curve with a = -3 (P-256 and SM2 both are)."""

from __future__ import annotations

from typing import Any


def double_a3(x: Any, y: Any, z: Any, p: Any) -> tuple[Any, Any, Any]:
    """2·(x, y, z) modulo `p`: dbl-2001-b (Bernstein–Lange, Explicit-Formulas Database).

    Valid only for a = -3. The operands may be ints or gmpy2 mpz values (the hash-to-curve
    fallback passes mpz); the caller handles the point at infinity.
    """
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) ** 2 - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3
