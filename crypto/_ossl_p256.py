"""Batch P-256 scalar multiplication through the system libcrypto (ctypes), for ECDH-PSI blinding.

Hazmat layer under `crypto.psi_ec`. `cryptography`'s `exchange` costs one key object per
peer point, a fresh derive context and the Python objects around them for every element;
ECDH-PSI does 4·10^6 of them at 10^6 × 10^6 (issue 18). Here a whole chunk of
concatenated encodings goes through one loop of three libcrypto calls per element:
`EC_POINT_oct2point` (an on-curve check of an uncompressed point, or a decompression: one
square root), `EC_POINT_mul` (OpenSSL's P-256 variable-base multiplication: constant-time,
the same code `exchange` runs) and `EC_POINT_is_at_infinity`; then each run of results is
made affine with one inversion and its x (and y for points passed on) read out.

`sqrt_candidates` gives hash-to-curve's square roots through `BN_mod_exp_mont`.

Every result equals `ECDH.exchange` on the same point and key (tests/test_psi_fast.py
checks both ways and the pure-Python reference). When `libcrypto.so.3` cannot be loaded,
`available()` is False and `crypto.psi_ec` keeps the `cryptography` path.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any

NID_P256 = 415  # NID_X9_62_prime256v1
_BN_FLG_CONSTTIME = 0x04
_VP = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "EC_GROUP_new_by_curve_name": (_VP, [ctypes.c_int]),
    "EC_GROUP_free": (None, [_VP]),
    "BN_CTX_new": (_VP, []),
    "BN_CTX_free": (None, [_VP]),
    "BN_bin2bn": (_VP, [_VP, ctypes.c_int, _VP]),  # bytes or an address
    "BN_set_flags": (None, [_VP, ctypes.c_int]),
    "BN_clear_free": (None, [_VP]),
    "EC_POINT_new": (_VP, [_VP]),
    "EC_POINT_free": (None, [_VP]),
    "EC_POINT_oct2point": (ctypes.c_int, [_VP, _VP, _VP, ctypes.c_size_t, _VP]),
    "EC_POINT_mul": (ctypes.c_int, [_VP, _VP, _VP, _VP, _VP, _VP]),
    "EC_POINTs_make_affine": (ctypes.c_int, [_VP, ctypes.c_size_t, ctypes.POINTER(_VP), _VP]),
    "EC_POINT_get_Jprojective_coordinates_GFp": (ctypes.c_int, [_VP, _VP, _VP, _VP, _VP, _VP]),
    "EC_POINT_is_at_infinity": (ctypes.c_int, [_VP, _VP]),
    "BN_new": (_VP, []),
    "BN_free": (None, [_VP]),
    "BN_bn2binpad": (ctypes.c_int, [_VP, _VP, ctypes.c_int]),
    "ERR_clear_error": (None, []),
    "BN_MONT_CTX_new": (_VP, []),
    "BN_MONT_CTX_set": (ctypes.c_int, [_VP, _VP, _VP]),
    "BN_mod_exp_mont": (ctypes.c_int, [_VP, _VP, _VP, _VP, _VP, _VP]),
}
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
POINT_BYTES = 65
"""An uncompressed SEC1 point: 0x04, x, y (32 bytes each, big-endian)."""
_RUN = 512
"""Results made affine together: one field inversion per run instead of one per element
(`EC_POINT_point2oct` inverts Z for every point, about 5 µs each here)."""


class OsslError(ValueError):
    """An input is not a point of P-256 (`index` says which element), or libcrypto failed."""

    def __init__(self, message: str, index: int = -1) -> None:
        super().__init__(message)
        self.index = index


def _load() -> Any:
    try:
        lib = ctypes.CDLL("libcrypto.so.3")
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        group = lib.EC_GROUP_new_by_curve_name(NID_P256)
    except (OSError, AttributeError):
        return None
    return (lib, group) if group else None


_LOADED = _load()


def available() -> bool:
    """Whether the libcrypto fast path is usable in this process."""
    return _LOADED is not None


class Scalar:
    """A secret exponent as a libcrypto BIGNUM (constant-time flag set, cleared on free)."""

    __slots__ = ("__weakref__", "_bn")

    def __init__(self, value: bytes) -> None:
        if _LOADED is None:
            raise OsslError("libcrypto is not available")
        lib = _LOADED[0]
        bn = lib.BN_bin2bn(value, len(value), None)
        if not bn:
            raise OsslError("BN_bin2bn failed")
        lib.BN_set_flags(bn, _BN_FLG_CONSTTIME)
        self._bn = bn
        weakref.finalize(self, lib.BN_clear_free, bn)

    def __repr__(self) -> str:
        return "Scalar(<secret>)"


def _interleave(data: bytes, width: int, prefix: bytes) -> bytearray:
    """`prefix + slice` for each `width`-byte slice, built with strided copies (no loop)."""
    if len(data) % width:
        raise OsslError(f"input is not a whole number of {width}-byte elements")
    n = len(data) // width
    out = bytearray(n * (width + 1))
    out[0 :: width + 1] = prefix * n
    for j in range(width):
        out[1 + j :: width + 1] = data[j::width]
    return out


def _multiply(key: Scalar, encoded: bytes | bytearray, enc_len: int, full: bool) -> bytes:
    """key·P for each `enc_len`-byte SEC1 encoding in `encoded`.

    Out: x(key·P) (32 bytes each), or with `full` the uncompressed SEC1 encoding 04‖x‖y
    (65 bytes each).
    """
    if _LOADED is None:
        raise OsslError("libcrypto is not available")
    if len(encoded) % enc_len:
        raise OsslError(f"input is not a whole number of {enc_len}-byte encodings")
    lib, group = _LOADED
    n, out_len = len(encoded) // enc_len, POINT_BYTES if full else 32
    if n == 0:
        return b""
    # read in place (libcrypto only reads it): no copy of the chunk
    if isinstance(encoded, bytearray):
        src = ctypes.addressof((ctypes.c_char * len(encoded)).from_buffer(encoded))
    else:
        src = ctypes.cast(ctypes.c_char_p(encoded), _VP).value or 0
    result = bytearray(out_len * n)
    dst = ctypes.addressof((ctypes.c_char * len(result)).from_buffer(result)) + (1 if full else 0)
    ctx, point, x, y = lib.BN_CTX_new(), lib.EC_POINT_new(group), lib.BN_new(), lib.BN_new()
    run = (_VP * _RUN)(*(lib.EC_POINT_new(group) for _ in range(_RUN)))
    try:
        if not (ctx and point and x and y and all(run)):
            raise OsslError("libcrypto allocation failed")
        oct2point, mul, k = lib.EC_POINT_oct2point, lib.EC_POINT_mul, key._bn
        at_infinity = lib.EC_POINT_is_at_infinity
        coords, to_bin = lib.EC_POINT_get_Jprojective_coordinates_GFp, lib.BN_bn2binpad
        yy = y if full else None  # x-only: libcrypto skips decoding y (and z, never read)
        for start in range(0, n, _RUN):
            count = min(_RUN, n - start)
            at = src + start * enc_len
            for j in range(count):
                if oct2point(group, point, at, enc_len, ctx) != 1:
                    lib.ERR_clear_error()
                    raise OsslError("not a P-256 point", start + j)
                if mul(group, run[j], None, point, k, ctx) != 1:
                    lib.ERR_clear_error()
                    raise OsslError("EC_POINT_mul failed", start + j)
                if at_infinity(group, run[j]):  # k ∈ [1, n) and P ≠ O: never
                    raise OsslError("blinded to the identity", start + j)
                at += enc_len
            if lib.EC_POINTs_make_affine(group, count, run, ctx) != 1:
                lib.ERR_clear_error()
                raise OsslError("EC_POINTs_make_affine failed", start)
            out = dst + out_len * start
            for j in range(count):  # Z = 1 now: X, Y are the affine coordinates
                if coords(group, run[j], x, yy, None, ctx) != 1 or to_bin(x, out, 32) != 32:
                    lib.ERR_clear_error()
                    raise OsslError("reading the coordinates failed", start + j)
                if full and to_bin(y, out + 32, 32) != 32:
                    raise OsslError("reading the coordinates failed", start + j)
                out += out_len
    finally:
        for p in run:
            lib.EC_POINT_free(p)
        for bn in (x, y):
            lib.BN_free(bn)
        lib.EC_POINT_free(point)
        lib.BN_CTX_free(ctx)
    if full:
        result[0::out_len] = b"\x04" * n
    return bytes(result)


def mul_x_only(key: Scalar, xs: bytes) -> bytes:
    """x(key·P) for each 32-byte abscissa in `xs` (either root: x(k·P) = x(k·(−P))).

    Decompression costs a square root per element; PSI sends full points instead (`mul_sec1`).
    """
    return _multiply(key, _interleave(xs, 32, b"\x02"), 33, False)


def mul_affine(key: Scalar, points: bytes) -> bytes:
    """x(key·P) for each 64-byte x‖y in `points` (libcrypto checks each is on the curve)."""
    return _multiply(key, _interleave(points, 64, b"\x04"), 65, False)


def mul_sec1(key: Scalar, points: bytes | bytearray, *, full: bool) -> bytes:
    """key·P for each 65-byte uncompressed SEC1 point 04‖x‖y.

    `EC_POINT_oct2point` checks each is on the curve (no square root; only the 0x04 form is
    taken). Out: 65-byte points with `full`, else 32-byte abscissae.
    """
    if len(points) % POINT_BYTES:
        raise OsslError(f"input is not a whole number of {POINT_BYTES}-byte points")
    n = len(points) // POINT_BYTES
    if points[0 : n * POINT_BYTES : POINT_BYTES] != b"\x04" * n:  # not hybrid or compressed
        bad = next(i for i in range(n) if points[i * POINT_BYTES] != 4)
        raise OsslError("not an uncompressed SEC1 point", bad)
    return _multiply(key, points, POINT_BYTES, full)


_SQRT: list[Any] = []  # [p, (p+1)/4, its Montgomery context]: made once per process, kept


def sqrt_candidates(values: bytes) -> bytes:
    """v^((p+1)/4) mod p for each 32-byte big-endian v (p = P-256's prime): √v if v is a square.

    For RFC 9380's SSWU map (`crypto._h2c_p256`): OpenSSL's Montgomery exponentiation takes
    ~8 µs here where gmpy2's `powmod` takes ~13. Variable time, like the rest of hashing to
    the curve (the inputs are the party's own, hashed in its own process).
    """
    if _LOADED is None:
        raise OsslError("libcrypto is not available")
    if len(values) % 32:
        raise OsslError("input is not a whole number of 32-byte values")
    lib = _LOADED[0]
    if not _SQRT:
        ctx, mont = lib.BN_CTX_new(), lib.BN_MONT_CTX_new()
        p = lib.BN_bin2bn(P256_P.to_bytes(32, "big"), 32, None)
        e = lib.BN_bin2bn(((P256_P + 1) // 4).to_bytes(32, "big"), 32, None)
        ok = ctx and mont and p and e and lib.BN_MONT_CTX_set(mont, p, ctx) == 1
        lib.BN_CTX_free(ctx)
        if not ok:
            raise OsslError("libcrypto allocation failed")
        _SQRT.extend((p, e, mont))
    p, e, mont = _SQRT
    n = len(values) // 32
    out = bytearray(32 * n)
    dst = ctypes.addressof((ctypes.c_char * len(out)).from_buffer(out)) if n else 0
    src = ctypes.cast(ctypes.c_char_p(values), _VP).value or 0
    ctx, a, r = lib.BN_CTX_new(), lib.BN_new(), lib.BN_new()
    try:
        if not (ctx and a and r):
            raise OsslError("libcrypto allocation failed")
        load, exp, store = lib.BN_bin2bn, lib.BN_mod_exp_mont, lib.BN_bn2binpad
        for i in range(n):
            if not load(src, 32, a) or exp(r, a, e, p, ctx, mont) != 1 or store(r, dst, 32) != 32:
                lib.ERR_clear_error()
                raise OsslError("modular exponentiation failed", i)
            src += 32
            dst += 32
    finally:
        lib.BN_clear_free(a)
        lib.BN_clear_free(r)
        lib.BN_CTX_free(ctx)
    return bytes(out)
