"""RFC 9380 hash-to-curve for P-256 (suite P256_XMD:SHA-256_SSWU_RO_), plus affine arithmetic.

Hazmat layer under `crypto.psi_ec`: plain integers (gmpy2 where it pays), no key handling.
Section numbers refer to RFC 9380 ("Hashing to Elliptic Curves", August 2023):

- §5.3.1 expand_message_xmd with SHA-256 (b_in_bytes = 32, s_in_bytes = 64);
- §5.2 hash_to_field with m = 1, L = 48 (k = 128), count = 2;
- §6.6.2 simplified SWU for A·B ≠ 0 in its generic form (the straight-line §F.2 variant
  gives the same output): P-256's p ≡ 3 (mod 4), so sqrt(x) = x^((p+1)/4) and a map costs
  one exponentiation and one inversion; Z = -10 (§8.2);
- §3 hash_to_curve: Q0 + Q1, clear_cofactor is the identity (h = 1), no isogeny (§8.2).

Not constant time (Python integers); callers hash identifiers inside the party's own
process, where a timing side channel is out of scope (docs/privacy.md §1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import gmpy2  # type: ignore[import-untyped]

from crypto import _ossl_p256 as ossl
from crypto.suites._jacobian import double_a3

P = 2**256 - 2**224 + 2**192 + 2**96 - 1
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
Z = P - 10
L = 48
_SQRT_EXP = (P + 1) // 4
_MP = gmpy2.mpz(P)
_MINUS_B_OVER_A = (P - B) * pow(A, -1, P) % P
_B_OVER_ZA = B * pow(Z * A % P, -1, P) % P
# sqrt(-Z) exists for P-256 (RFC 9380 §F.2.1.2 constant c2); Z·sqrt(-Z) turns a root of
# -g(x1) into a root of g(x2) = Z^3·u^6·g(x1), so each map needs one exponentiation.
_SQRT_MINUS_Z = pow(P - Z, _SQRT_EXP, P)
assert _SQRT_MINUS_Z * _SQRT_MINUS_Z % P == P - Z
_C_X2 = Z * _SQRT_MINUS_Z % P

Affine = tuple[int, int] | None  # None is the point at infinity


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 with H = SHA-256."""
    ell = -(-len_in_bytes // 32)
    if ell > 255 or len_in_bytes > 65535 or len(dst) > 255:
        raise ValueError("expand_message_xmd: output or DST too long")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(64) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    bi = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    out = [bi]
    b0_int = int.from_bytes(b0, "big")
    for i in range(2, ell + 1):
        mixed = (b0_int ^ int.from_bytes(bi, "big")).to_bytes(32, "big")
        bi = hashlib.sha256(mixed + bytes([i]) + dst_prime).digest()
        out.append(bi)
    return b"".join(out)[:len_in_bytes]


def hash_to_field(msg: bytes, dst: bytes, count: int = 2) -> list[int]:
    """RFC 9380 §5.2 for F_p (m = 1, L = 48)."""
    uniform = expand_message_xmd(msg, dst, count * L)
    return [int.from_bytes(uniform[L * i : L * (i + 1)], "big") % P for i in range(count)]


def _sqrt_if_square(v: int) -> int | None:
    r = int(gmpy2.powmod(v, _SQRT_EXP, _MP))
    return r if r * r % P == v else None


def map_to_curve_sswu(u: int) -> tuple[int, int]:
    """RFC 9380 §6.6.2 simplified SWU for P-256 (A = -3, B as above, Z = -10).

    Since p ≡ 3 (mod 4), -1 is a non-square: y1 = g(x1)^((p+1)/4) squares to g(x1) when
    g(x1) is a square and to -g(x1) otherwise; in that case Z·sqrt(-Z)·u^3·y1 is a root of
    g(x2) (the same trick as sqrt_ratio in §F.2.1.2), so is_square and both sqrt calls of
    §6.6.2 cost one exponentiation.
    """
    u2 = u * u % P
    zu2 = Z * u2 % P
    den = (zu2 * zu2 + zu2) % P  # Z^2·u^4 + Z·u^2
    if den == 0:  # exceptional case of §6.6.2 step 2
        x1 = _B_OVER_ZA
    else:
        x1 = _MINUS_B_OVER_A * (1 + int(gmpy2.invert(den, _MP))) % P
    gx1 = (x1 * x1 % P * x1 + A * x1 + B) % P
    y1 = int(gmpy2.powmod(gx1, _SQRT_EXP, _MP))
    if y1 * y1 % P == gx1:
        x, y = x1, y1
    else:
        x, y = zu2 * x1 % P, _C_X2 * u2 % P * u % P * y1 % P
    if (u & 1) != (y & 1):  # sgn0 for m = 1 (§4.1)
        y = P - y
    return x, y


def add(p1: Affine, p2: Affine) -> Affine:
    """Affine addition on P-256 (complete over the cases that occur: doubling, inverse)."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        lam = (3 * x1 * x1 + A) * int(gmpy2.invert(2 * y1, _MP)) % P
    else:
        lam = (y2 - y1) * int(gmpy2.invert((x2 - x1) % P, _MP)) % P
    x3 = (lam * lam - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


def hash_to_curve(msg: bytes, dst: bytes) -> Affine:
    """RFC 9380 §3 hash_to_curve for P256_XMD:SHA-256_SSWU_RO_ (cofactor 1)."""
    u0, u1 = hash_to_field(msg, dst, 2)
    return add(map_to_curve_sswu(u0), map_to_curve_sswu(u1))


# -- batches: the same functions with one field inversion per batch (Montgomery's trick) ---


def _invert_many(values: list[Any]) -> list[Any]:
    """Inverses modulo p of nonzero `values` with one inversion (Montgomery's trick)."""
    prefix = []
    acc = gmpy2.mpz(1)
    for v in values:
        prefix.append(acc)
        acc = acc * v % _MP
    inv = gmpy2.invert(acc, _MP)
    out = [inv] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % _MP
        inv = inv * values[i] % _MP
    return out


def hash_to_field_many(msgs: Sequence[bytes], dst: bytes) -> list[tuple[Any, Any]]:
    """`hash_to_field(msg, dst, 2)` for each message, as gmpy2 values (§5.2, §5.3.1).

    The 64 zero bytes that open msg_prime are one SHA-256 block: its state is hashed once
    and copied per message.
    """
    if len(dst) > 255:
        raise ValueError("expand_message_xmd: DST too long")
    dst_prime = dst + bytes([len(dst)])
    tail = (2 * L).to_bytes(2, "big") + b"\x00" + dst_prime
    z_pad = hashlib.sha256(bytes(64))
    sha256, mpz, from_bytes, p = hashlib.sha256, gmpy2.mpz, int.from_bytes, _MP
    out = []
    for msg in msgs:
        h0 = z_pad.copy()
        h0.update(msg + tail)
        b0 = h0.digest()
        b1 = sha256(b0 + b"\x01" + dst_prime).digest()
        b0_int = from_bytes(b0, "big")
        mixed = (b0_int ^ from_bytes(b1, "big")).to_bytes(32, "big")
        b2 = sha256(mixed + b"\x02" + dst_prime).digest()
        mixed = (b0_int ^ from_bytes(b2, "big")).to_bytes(32, "big")
        uniform = b1 + b2 + sha256(mixed + b"\x03" + dst_prime).digest()
        out.append(
            (mpz(from_bytes(uniform[:L], "big")) % p, mpz(from_bytes(uniform[L:], "big")) % p)
        )
    return out


_M = {  # the curve constants as gmpy2 values: mixing them in as ints converts on every use
    name: gmpy2.mpz(v)
    for name, v in (
        ("B", B),
        ("Z", Z),
        ("c1", _MINUS_B_OVER_A),
        ("x0", _B_OVER_ZA),
        ("c2", _C_X2),
        ("e", _SQRT_EXP),
    )
}


def _sqrt_many(values: list[Any]) -> list[Any]:
    """v^((p+1)/4) for each v (a square root of every square v).

    Through libcrypto's Montgomery exponentiation when it loads (~10 µs per value here with
    the conversions, gmpy2's `powmod` ~13), else gmpy2.
    """
    if not ossl.available():
        return [gmpy2.powmod(v, _M["e"], _MP) for v in values]
    roots = ossl.sqrt_candidates(b"".join(v.to_bytes(32, "big") for v in values))
    from_bytes = gmpy2.mpz.from_bytes
    return [from_bytes(roots[i : i + 32], "big") for i in range(0, len(roots), 32)]


def map_to_curve_sswu_many(us: Sequence[Any]) -> list[tuple[Any, Any]]:
    """`map_to_curve_sswu` for each field element, with the inversions batched."""
    p, b, z, c1, x_exc, c2 = _MP, _M["B"], _M["Z"], _M["c1"], _M["x0"], _M["c2"]
    pre = []
    for u in us:
        u2 = u * u % p
        zu2 = z * u2 % p
        pre.append((u, u2, zu2, zu2 * (zu2 + 1) % p))  # den = Z²u⁴ + Z·u²
    invs = _invert_many([d or 1 for *_, d in pre])  # den = 0 is §6.6.2's exceptional case
    x1s, gx1s = [], []
    for (*_, den), inv in zip(pre, invs, strict=True):
        x1 = c1 * (inv + 1) % p if den else x_exc
        x1s.append(x1)
        gx1s.append((x1 * (x1 * x1 - 3) + b) % p)  # x³ + A·x + B with A = -3
    out = []
    for (u, u2, zu2, _), x1, gx1, y1 in zip(pre, x1s, gx1s, _sqrt_many(gx1s), strict=True):
        if y1 * y1 % p == gx1:
            x, y = x1, y1
        else:
            x, y = zu2 * x1 % p, c2 * u2 * u % p * y1 % p
        if (u & 1) != (y & 1):
            y = p - y
        out.append((x, y))
    return out


def add_many(q0s: Sequence[tuple[Any, Any]], q1s: Sequence[tuple[Any, Any]]) -> list[Affine]:
    """`add(q0, q1)` pairwise, with the inversions batched (Q0 = ±Q1 through `add`)."""
    p = _MP
    dx = [(b[0] - a[0]) % p for a, b in zip(q0s, q1s, strict=True)]
    invs = _invert_many([d or 1 for d in dx])
    out: list[Affine] = []
    for (x1, y1), (x2, y2), d, inv in zip(q0s, q1s, dx, invs, strict=True):
        if not d:  # doubling or the identity: the general addition handles both
            out.append(add((int(x1), int(y1)), (int(x2), int(y2))))
            continue
        lam = (y2 - y1) * inv % p
        x3 = (lam * lam - x1 - x2) % p
        out.append((int(x3), int((lam * (x1 - x3) - y1) % p)))
    return out


def hash_to_curve_many(msgs: Sequence[bytes], dst: bytes) -> list[Affine]:
    """`hash_to_curve(msg, dst)` for each message (identical outputs; tests compare them)."""
    fields = hash_to_field_many(msgs, dst)
    q0 = map_to_curve_sswu_many([u0 for u0, _ in fields])
    q1 = map_to_curve_sswu_many([u1 for _, u1 in fields])
    return add_many(q0, q1)


def on_curve(x: int, y: int) -> bool:
    """y^2 = x^3 - 3x + b over F_p with coordinates in range."""
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def lift_x(x: int) -> tuple[int, int] | None:
    """The point with abscissa x and even ordinate, or None when x is not on the curve."""
    if not 0 <= x < P:
        return None
    y = _sqrt_if_square((x * x % P * x + A * x + B) % P)
    if y is None:
        return None
    return x, (P - y if y & 1 else y)


# -- pure-Python/gmpy2 scalar multiplication (fallback and reference) ------------------------


def scalar_mult(k: int, point: tuple[int, int]) -> Affine:
    """k·point by double-and-add in Jacobian coordinates (gmpy2); variable time."""
    k %= N
    if k == 0:
        return None
    acc: Affine = None
    px, py = gmpy2.mpz(point[0]), gmpy2.mpz(point[1])
    x, y, z = px, py, gmpy2.mpz(1)
    started = False
    for bit in bin(k)[2:]:
        if started:
            x, y, z = double_a3(x, y, z, _MP)
        if bit == "1":
            if not started:
                x, y, z, started = px, py, gmpy2.mpz(1), True
                continue
            # mixed addition (add-2007-bl, Z2 = 1) of the affine base point
            z1z1 = z * z % _MP
            u2 = px * z1z1 % _MP
            s2 = py * z * z1z1 % _MP
            h = (u2 - x) % _MP
            r = (s2 - y) % _MP
            if h == 0:
                if r == 0:
                    x, y, z = double_a3(x, y, z, _MP)
                    continue
                return None  # pragma: no cover - only for k ≥ N, excluded above
            hh = h * h % _MP
            hhh = h * hh % _MP
            v = x * hh % _MP
            x3 = (r * r - hhh - 2 * v) % _MP
            y = (r * (v - x3) - y * hhh) % _MP
            x = x3
            z = z * h % _MP
    zi = gmpy2.invert(z, _MP)
    zi2 = zi * zi % _MP
    acc = (int(x * zi2 % _MP), int(y * zi2 * zi % _MP))
    return acc


# -- y from two abscissae (Okeya–Sakurai): the first blinding on x-only ECDH ------------------


def recover_sec1(points: Sequence[tuple[int, int]], xq: bytes, xr: bytes) -> bytes:
    """k·P as 65-byte SEC1 points, from P, x(k·P) (`xq`) and x((k+1)·P) (`xr`), 32 bytes each.

    With Q = k·P = (x1, y1) and x2 = x(Q + P), the chord through P and Q gives
    y1 = (2b + (a + x·x1)(x + x1) − x2·(x − x1)²) / (2y) (Okeya–Sakurai, CHES 2001): no
    square root, one batched inversion. Needs Q ≠ ±P, i.e. k ≢ ±1 (mod n): the caller's
    check. Each result is checked on the curve.
    """
    p, b, mpz = _MP, _M["B"], gmpy2.mpz
    from_bytes = mpz.from_bytes
    n = len(points)
    if len(xq) != 32 * n or len(xr) != 32 * n:
        raise ValueError("one abscissa of k·P and of (k+1)·P per point")
    invs = _invert_many([2 * mpz(y) % p for _, y in points])
    out = []
    for i, ((x, _), inv) in enumerate(zip(points, invs, strict=True)):
        x1 = from_bytes(xq[32 * i : 32 * i + 32], "big")
        x2 = from_bytes(xr[32 * i : 32 * i + 32], "big")
        d = x - x1
        y1 = (2 * b + (x * x1 - 3) * (x + x1) - x2 * d * d) * inv % p
        if (y1 * y1 - x1 * (x1 * x1 - 3) - b) % p:
            raise ValueError("recovered point is not on the curve")
        out.append(b"\x04" + int(x1).to_bytes(32, "big") + int(y1).to_bytes(32, "big"))
    return b"".join(out)
