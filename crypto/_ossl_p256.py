"""Batch P-256 scalar multiplication through the system libcrypto (ctypes), for ECDH-PSI blinding.

Hazmat layer under `crypto.psi_ec`. `cryptography`'s `exchange` costs one key object per
peer point, a fresh derive context and the Python objects around them for every element;
ECDH-PSI does 4·10^6 of them at 10^6 × 10^6 (issue 18). Here a whole chunk of
concatenated encodings goes through one loop of three libcrypto calls per element:
`EC_POINT_oct2point` (decompression or an on-curve check), `EC_POINT_mul` (OpenSSL's P-256
variable-base multiplication: constant-time, the same code `exchange` runs) and
`EC_POINT_point2oct`, whose compressed form starts with the x-coordinate ECDH returns.

Every result equals `ECDH.exchange` on the same point and key (tests/test_psi_fast.py
checks both ways and the pure-Python reference). When `libcrypto.so.3` cannot be loaded,
`available()` is False and `crypto.psi_ec` keeps the `cryptography` path.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any

NID_P256 = 415  # NID_X9_62_prime256v1
_COMPRESSED = 2  # POINT_CONVERSION_COMPRESSED
_BN_FLG_CONSTTIME = 0x04
_VP = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "EC_GROUP_new_by_curve_name": (_VP, [ctypes.c_int]),
    "EC_GROUP_free": (None, [_VP]),
    "BN_CTX_new": (_VP, []),
    "BN_CTX_free": (None, [_VP]),
    "BN_bin2bn": (_VP, [ctypes.c_char_p, ctypes.c_int, _VP]),
    "BN_set_flags": (None, [_VP, ctypes.c_int]),
    "BN_clear_free": (None, [_VP]),
    "EC_POINT_new": (_VP, [_VP]),
    "EC_POINT_free": (None, [_VP]),
    "EC_POINT_oct2point": (ctypes.c_int, [_VP, _VP, ctypes.c_char_p, ctypes.c_size_t, _VP]),
    "EC_POINT_mul": (ctypes.c_int, [_VP, _VP, _VP, _VP, _VP, _VP]),
    "EC_POINT_point2oct": (
        ctypes.c_size_t,
        [_VP, _VP, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, _VP],
    ),
    "ERR_clear_error": (None, []),
}


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


def _multiply(key: Scalar, data: bytes, width: int, prefix: bytes) -> bytes:
    """x(key·P) for each `width`-byte slice of `data`, decoded as `prefix + slice`."""
    if _LOADED is None:
        raise OsslError("libcrypto is not available")
    if len(data) % width:
        raise OsslError(f"input is not a whole number of {width}-byte elements")
    lib, group = _LOADED
    oct2point, mul, point2oct = lib.EC_POINT_oct2point, lib.EC_POINT_mul, lib.EC_POINT_point2oct
    ctx = lib.BN_CTX_new()
    point, result = lib.EC_POINT_new(group), lib.EC_POINT_new(group)
    out = ctypes.create_string_buffer(33)
    view = memoryview(data)
    parts: list[bytes] = []
    append, k, enc_len = parts.append, key._bn, width + 1
    try:
        if not (ctx and point and result):
            raise OsslError("libcrypto allocation failed")
        for i in range(0, len(data), width):
            if oct2point(group, point, prefix + view[i : i + width], enc_len, ctx) != 1:
                lib.ERR_clear_error()
                raise OsslError("not a P-256 point", i // width)
            if mul(group, result, None, point, k, ctx) != 1:
                lib.ERR_clear_error()
                raise OsslError("EC_POINT_mul failed", i // width)
            if point2oct(group, result, _COMPRESSED, out, 33, ctx) != 33:  # 1 = infinity
                lib.ERR_clear_error()
                raise OsslError("blinded to the identity", i // width)
            append(out.raw[1:])
    finally:
        lib.EC_POINT_free(result)
        lib.EC_POINT_free(point)
        lib.BN_CTX_free(ctx)
    return b"".join(parts)


def mul_x_only(key: Scalar, xs: bytes) -> bytes:
    """x(key·P) for each 32-byte abscissa in `xs` (either root: x(k·P) = x(k·(−P)))."""
    return _multiply(key, xs, 32, b"\x02")


def mul_affine(key: Scalar, points: bytes) -> bytes:
    """x(key·P) for each 64-byte x‖y in `points` (libcrypto checks each is on the curve)."""
    return _multiply(key, points, 64, b"\x04")
