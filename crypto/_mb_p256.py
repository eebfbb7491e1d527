"""Eight-lane P-256 ECDH through Intel's crypto_mb (AVX-512 IFMA), for ECDH-PSI's blindings.

Hazmat layer under `crypto.psi_ec`, beside `_ossl_p256`. The second blinding of ECDH-PSI is
x(k·P) for a 65-byte SEC1 point P and one secret k: exactly ECDH (the first takes two such
products and recovers y, see `psi_ec`). OpenSSL's P-256 takes
~55 µs a multiplication on this machine's cores (`openssl speed ecdhp256`: 18k op/s);
`mbx_nistp256_ecdh_mb8`, crypto_mb's documented public entry, runs eight of them at once in
the 52-bit IFMA lanes of AVX-512 in ~12 µs each, constant time in the key, with its own
on-curve check of every input point (a lane that fails gets a status, not a result). The
output abscissae are byte-for-byte OpenSSL's (tests/test_psi_fast.py compares them).

The library ships in the `ipp-crypto` wheel (Intel Cryptography Primitives, Apache-2.0)
under `<prefix>/lib`, and needs the Intel compiler runtime of `intel-cmplr-lib-rt` beside it
(libimf, libsvml, libirng, libintlc), loaded first so that its dependencies resolve without
LD_LIBRARY_PATH. `available()` is False, and `psi_ec` keeps the libcrypto path, when the
wheel is absent, when the CPU has no AVX-512 IFMA (the entry then answers "unsupported
ISA"), or when a known answer (x(2·G)) does not come out.

Coordinates are checked to be below p here (crypto_mb would reduce x + p to x: OpenSSL
refuses such an encoding, and so do we). Only the documented `mbx_*` entry is called.
Its multiplication misses for some structured scalars (k = n − 2: a wrong abscissa for ~3%
of points here), so `psi_ec` hands it only keys far from 0 and n that pass a spot check.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import sysconfig
import weakref
from pathlib import Path
from typing import Any

import numpy as np

POINT_BYTES = 65
LANES = 8
_P_LIMBS = (0xFFFFFFFF00000001, 0x0000000000000000, 0x00000000FFFFFFFF, 0xFFFFFFFFFFFFFFFF)
"""p of P-256 as big-endian 64-bit limbs (most significant first)."""
_RUNTIME = ("libintlc.so.5", "libimf.so", "libsvml.so", "libirng.so")
_LIBRARY = "libcrypto_mb.so.13"
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
_X_2G = 0x7CF27B188D034F7E8A52380304B51AC3C08969E277F21B35A60B48FC47669978


class MbError(ValueError):
    """An input is not a P-256 point (`index` says which element), or crypto_mb failed."""

    def __init__(self, message: str, index: int = -1) -> None:
        super().__init__(message)
        self.index = index


def _directories() -> list[Path]:
    seen: list[Path] = []
    for base in (sysconfig.get_path("data"), sys.prefix, sys.base_prefix):
        path = Path(base) / "lib"
        if path not in seen:
            seen.append(path)
    return seen


def _load() -> Any:
    for directory in _directories():
        if not (directory / _LIBRARY).is_file():
            continue
        try:
            for name in _RUNTIME:
                ctypes.CDLL(str(directory / name), mode=ctypes.RTLD_GLOBAL)
            lib = ctypes.CDLL(str(directory / _LIBRARY))
            fn = lib.mbx_nistp256_ecdh_mb8
        except (OSError, AttributeError):
            return None
        fn.restype = ctypes.c_uint32
        fn.argtypes = [ctypes.c_void_p] * 6
        return fn if _known_answer(fn) else None
    return None


def _known_answer(fn: Any) -> bool:
    """x(2·G) on all eight lanes: the CPU runs the IFMA code and the result is P-256's."""
    gx = np.array([_G[0].to_bytes(32, "little")] * LANES, dtype="S32")
    gy = np.array([_G[1].to_bytes(32, "little")] * LANES, dtype="S32")
    key = ctypes.create_string_buffer((2).to_bytes(32, "little"), 32)
    out = np.zeros((LANES, 32), dtype=np.uint8)
    lanes = np.arange(LANES, dtype=np.uint64)
    ptrs = [(_address(a) + 32 * lanes).astype(np.uint64) for a in (out, gx, gy)]
    keys = np.full(LANES, ctypes.addressof(key), dtype=np.uint64)
    status = fn(_address(ptrs[0]), _address(keys), _address(ptrs[1]), _address(ptrs[2]), None, None)
    want = _X_2G.to_bytes(32, "big")
    return status == 0 and all(bytes(row) == want for row in out)


def _address(arr: np.ndarray[Any, Any]) -> int:
    return int(arr.ctypes.data)


@functools.cache
def _ecdh() -> Any:
    """The crypto_mb entry, loaded and checked on first use, or None.

    Not at import: every process that imports `crypto` would load the Intel libraries and
    run the known answer (about 30 ms of CPU), and only ECDH-PSI needs them.
    """
    return _load()


def available() -> bool:
    """Whether the crypto_mb path is usable in this process (library, CPU, known answer)."""
    return _ecdh() is not None


class Scalar:
    """A secret exponent as crypto_mb wants it: four little-endian 64-bit limbs, wiped on free."""

    __slots__ = ("__weakref__", "_buf")

    def __init__(self, value: bytes) -> None:
        if len(value) != 32:
            raise MbError("a scalar is 32 bytes")
        self._buf = ctypes.create_string_buffer(value[::-1], 32)
        weakref.finalize(self, ctypes.memset, ctypes.addressof(self._buf), 0, 32)

    def __repr__(self) -> str:
        return "Scalar(<secret>)"


def _below_p(coords: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Per row of big-endian 32-byte values (as (n, 4) '>u8' limbs): whether it is < p."""
    less = np.zeros(len(coords), dtype=bool)
    equal = np.ones(len(coords), dtype=bool)
    for i, limb in enumerate(_P_LIMBS):
        col = coords[:, i].astype(np.uint64)
        less |= equal & (col < np.uint64(limb))
        equal &= col == np.uint64(limb)
    return less


def mul_sec1_x(key: Scalar, points: bytes | bytearray) -> bytes:
    """x(key·P) (32 bytes big-endian each) for each 65-byte uncompressed SEC1 point 04‖x‖y.

    Refuses a point whose prefix is not 0x04, whose coordinates are not below p, or which
    is not on the curve; `MbError.index` names the first such element.
    """
    ecdh = _ecdh()
    if ecdh is None:
        raise MbError("crypto_mb is not available")
    if len(points) % POINT_BYTES:
        raise MbError(f"input is not a whole number of {POINT_BYTES}-byte points")
    n = len(points) // POINT_BYTES
    if n == 0:
        return b""
    rows = np.frombuffer(points, dtype=np.uint8).reshape(n, POINT_BYTES)
    big = np.ascontiguousarray(rows[:, 1:]).view(">u8")  # (n, 8): x limbs, then y limbs
    ok = (rows[:, 0] == 4) & _below_p(big[:, :4]) & _below_p(big[:, 4:])
    if not ok.all():
        raise MbError("not an uncompressed SEC1 point of P-256", int(np.argmin(ok)))
    padded = -(-n // LANES) * LANES  # the last group's spare lanes repeat the first point
    take = np.concatenate([np.arange(n), np.zeros(padded - n, dtype=np.intp)])
    # crypto_mb reads each coordinate as four little-endian 64-bit limbs: reverse the bytes
    xs = np.ascontiguousarray(rows[take, 32:0:-1])
    ys = np.ascontiguousarray(rows[take, 64:32:-1])
    out = np.empty((padded, 32), dtype=np.uint8)
    at = 32 * np.arange(padded, dtype=np.uint64)
    px, py, po = (np.uint64(_address(a)) + at for a in (xs, ys, out))
    keys = np.full(LANES, ctypes.addressof(key._buf), dtype=np.uint64)
    k = _address(keys)
    bx, by, bo = _address(px), _address(py), _address(po)
    stride = 8 * LANES  # bytes of one group's eight pointers
    for g in range(padded // LANES):
        status = ecdh(bo + g * stride, k, bx + g * stride, by + g * stride, None, None)
        if status:
            lane = next(i for i in range(LANES) if (status >> (4 * i)) & 0xF)
            raise MbError("not a P-256 point", g * LANES + lane)
    return out[:n].tobytes()
