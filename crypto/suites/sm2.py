"""SM2 digital signatures (GB/T 32918.2-2016) on the recommended curve (GB/T 32918.5-2017)."""

from __future__ import annotations

import hashlib
from typing import Final

import gmssl_pyx  # type: ignore[import-untyped]  # ships a .pyi but no py.typed marker
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from crypto.errors import InvalidKey
from crypto.suites._jacobian import double_a3

# The elliptic-curve arithmetic of signing and verifying is GmSSL's (C, via `gmssl_pyx`).
# pdx computes the user digest Z_A and e = SM3(Z_A ‖ M) itself (GB/T 32918.2-2016 6.1
# A1-A2, 7.1 B3-B4) and hands GmSSL only e, so the ID handling is ours, checked against
# the standard's example, and any ID works. What GmSSL does not expose, deriving the
# public key of a private key, is done below in plain Python: it runs once per key load.
#
# Encodings (pdx's choice, fixed): private key = the 32-byte big-endian scalar d;
# public key = the uncompressed point 0x04 ‖ x ‖ y (GB/T 32918.1-2016 4.2.9, 65 bytes);
# signature = r ‖ s, each a 32-byte big-endian integer (64 bytes). GM/T 0009-2012's
# DER SEQUENCE { r, s } is one call away (`signature_to_der`, `signature_from_der`) for
# certificates and CMS; raw r ‖ s has one spelling per signature and a fixed length.

# Recommended curve parameters, GB/T 32918.5-2017 (sm2p256v1). a = p - 3.
P: Final = 0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFF
A: Final = 0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFC
B: Final = 0x28E9FA9E_9D9F5E34_4D5A9E4B_CF6509A7_F39789F5_15AB8F92_DDBCBD41_4D940E93
N: Final = 0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_7203DF6B_21C6052B_53BBF409_39D54123
GX: Final = 0x32C4AE2C_1F198119_5F990446_6A39C994_8FE30BBF_F2660BE1_715A4589_334C74C7
GY: Final = 0xBC3736A2_F4F6779C_59BDCEE3_6B692153_D0A9877C_C62A4740_02DF32E5_2139F0A0

# GM/T 0009-2012 10: the ID to use when the parties agreed on no other.
DEFAULT_USER_ID: Final = b"1234567812345678"
# ENTL_A is two bytes holding the ID's length in bits (GB/T 32918.2-2016 5.5).
MAX_USER_ID_SIZE: Final = 0xFFFF // 8

PRIVATE_KEY_SIZE: Final = 32
PUBLIC_KEY_SIZE: Final = 65
SIGNATURE_SIZE: Final = 64

_COORD = 32
_CURVE_BYTES = b"".join(v.to_bytes(_COORD, "big") for v in (A, B, GX, GY))


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _check_user_id(user_id: bytes) -> None:
    if not 1 <= len(user_id) <= MAX_USER_ID_SIZE:
        raise ValueError(f"an SM2 user ID is 1 to {MAX_USER_ID_SIZE} bytes")


def user_digest(public_key: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A) (GB/T 32918.2-2016 5.5).

    `public_key` is the 65-byte uncompressed encoding; it is not validated here.
    """
    _check_user_id(user_id)
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKey("an SM2 public key is 65 bytes (0x04 ‖ x ‖ y)")
    entl = (len(user_id) * 8).to_bytes(2, "big")
    return _sm3(entl + user_id + _CURVE_BYTES + public_key[1:])


def message_digest(public_key: bytes, message: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """The signed value e = SM3(Z_A ‖ M) (GB/T 32918.2-2016 6.1 A1-A2)."""
    return _sm3(user_digest(public_key, user_id) + message)


def signature_to_der(signature: bytes) -> bytes:
    """Raw r ‖ s → DER SEQUENCE { r INTEGER, s INTEGER } (GM/T 0009-2012 7.3)."""
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError(f"a raw SM2 signature is {SIGNATURE_SIZE} bytes")
    return encode_dss_signature(
        int.from_bytes(signature[:_COORD], "big"), int.from_bytes(signature[_COORD:], "big")
    )


def signature_from_der(der: bytes) -> bytes:
    """DER SEQUENCE { r, s } → raw r ‖ s; `ValueError` if not strict DER or out of range."""
    r, s = decode_dss_signature(der)  # strict DER: trailing bytes, BER forms refused
    if not (0 < r < N and 0 < s < N):
        raise ValueError("SM2 signature component out of range")
    return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")


# -- affine points in plain Python: public-key derivation and validation ---------------


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


_Jacobian = tuple[int, int, int]  # Z == 0 is the point at infinity
_INFINITY: _Jacobian = (1, 1, 0)


def _double(point: _Jacobian) -> _Jacobian:
    # dbl-2001-b (Bernstein-Lange EFD), valid because a = -3.
    x1, y1, z1 = point
    if z1 == 0 or y1 == 0:
        return _INFINITY
    return double_a3(x1, y1, z1, P)


def _add(p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    # add-2007-bl (EFD), with the equal-point and opposite-point cases.
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - u1) % P
    r = 2 * (s2 - s1) % P
    if h == 0:
        return _double(p1) if r == 0 else _INFINITY
    i = 4 * h * h % P
    j = h * i % P
    v = u1 * i % P
    x3 = (r * r - j - 2 * v) % P
    y3 = (r * (v - x3) - 2 * s1 * j) % P
    z3 = ((z1 + z2) ** 2 - z1z1 - z2z2) * h % P
    return x3, y3, z3


def _public_point(d: int) -> bytes:
    """[d]G as 0x04 ‖ x ‖ y, by a Montgomery ladder.

    The ladder keeps the operation sequence regular; Python integers are not
    constant-time, which is acceptable for a computation done once per key load.
    """
    r0, r1 = _INFINITY, (GX, GY, 1)
    for bit in range(255, -1, -1):
        if (d >> bit) & 1:
            r0, r1 = _add(r0, r1), _double(r1)
        else:
            r1, r0 = _add(r0, r1), _double(r0)
    x, y, z = r0
    z_inv = pow(z, -1, P)
    z2 = z_inv * z_inv % P
    ax, ay = x * z2 % P, y * z2 * z_inv % P
    return b"\x04" + ax.to_bytes(_COORD, "big") + ay.to_bytes(_COORD, "big")


def _fingerprint(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


class Sm2PublicKey:
    """A validated SM2 public key (GB/T 32918.1-2016 6.2.1 on a cofactor-1 curve)."""

    __slots__ = ("_encoded",)

    def __init__(self, encoded: bytes) -> None:
        if not isinstance(encoded, bytes) or len(encoded) != PUBLIC_KEY_SIZE:
            raise InvalidKey("an SM2 public key is 65 bytes (0x04 ‖ x ‖ y)")
        if encoded[0] != 0x04:
            raise InvalidKey("an SM2 public key must use the uncompressed encoding 0x04")
        x = int.from_bytes(encoded[1 : 1 + _COORD], "big")
        y = int.from_bytes(encoded[1 + _COORD :], "big")
        # 6.2.1 a)-c): not the point at infinity (unencodable here), coordinates in
        # F_p, on the curve. d) [n]Q = O holds for every curve point since h = 1.
        if not _on_curve(x, y):
            raise InvalidKey("the SM2 public key is not a point on the curve")
        self._encoded = bytes(encoded)

    @classmethod
    def from_bytes(cls, encoded: bytes) -> Sm2PublicKey:
        return cls(encoded)

    def public_bytes(self) -> bytes:
        """The 65-byte uncompressed point 0x04 ‖ x ‖ y."""
        return self._encoded

    def verify(self, message: bytes, signature: bytes, *, user_id: bytes = DEFAULT_USER_ID) -> bool:
        """True only for a valid raw r ‖ s signature of `message` by this key and `user_id`."""
        return self.verify_digest(message_digest(self._encoded, message, user_id), signature)

    def verify_digest(self, digest: bytes, signature: bytes) -> bool:
        """Verify against a precomputed e = SM3(Z_A ‖ M); never raises on a bad signature."""
        if len(digest) != 32 or len(signature) != SIGNATURE_SIZE:
            return False
        r = int.from_bytes(signature[:_COORD], "big")
        s = int.from_bytes(signature[_COORD:], "big")
        # GB/T 32918.2-2016 7.1 B1-B2: r, s in [1, n-1]; B5: t = r + s mod n != 0.
        if not (0 < r < N and 0 < s < N) or (r + s) % N == 0:
            return False
        try:
            # GmSSL writes a line to stderr for every failed verification; nothing
            # secret is in it (source file and function names only).
            return bool(
                gmssl_pyx.sm2_verify_sm3_digest(
                    self._encoded[1:], bytes(digest), encode_dss_signature(r, s)
                )
            )
        except (gmssl_pyx.InvalidValueError, gmssl_pyx.GmsslInnerError):
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sm2PublicKey) and other._encoded == self._encoded

    def __hash__(self) -> int:
        return hash(self._encoded)

    def __repr__(self) -> str:
        return f"Sm2PublicKey(fingerprint={_fingerprint(self._encoded)!r})"


class Sm2PrivateKey:
    """An SM2 private key d in [1, n-2] (GB/T 32918.1-2016 6.1) and its public key.

    `repr` never shows d.
    """

    __slots__ = ("_d", "_public")

    def __init__(self, private_bytes: bytes) -> None:
        if not isinstance(private_bytes, bytes) or len(private_bytes) != PRIVATE_KEY_SIZE:
            raise InvalidKey("an SM2 private key is 32 bytes")
        d = int.from_bytes(private_bytes, "big")
        if not 1 <= d <= N - 2:
            raise InvalidKey("the SM2 private key is out of range [1, n-2]")
        self._d = bytes(private_bytes)
        self._public = Sm2PublicKey(_public_point(d))

    @classmethod
    def from_bytes(cls, private_bytes: bytes) -> Sm2PrivateKey:
        return cls(private_bytes)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        """A fresh key from GmSSL's generator (the OS random source)."""
        while True:
            public_raw, private_raw = gmssl_pyx.sm2_key_generate()
            d = int.from_bytes(private_raw, "big")
            if 1 <= d <= N - 2:  # 6.1 wants [1, n-2], whatever range the library used
                break
        key = cls.__new__(cls)
        key._d = bytes(private_raw)
        key._public = Sm2PublicKey(b"\x04" + bytes(public_raw))
        return key

    def private_bytes(self) -> bytes:
        """The 32-byte big-endian scalar d."""
        return self._d

    def public_key(self) -> Sm2PublicKey:
        return self._public

    def sign(self, message: bytes, *, user_id: bytes = DEFAULT_USER_ID) -> bytes:
        """Sign `message` for `user_id` (GB/T 32918.2-2016 6.1); raw r ‖ s, 64 bytes."""
        return self.sign_digest(message_digest(self._public.public_bytes(), message, user_id))

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a precomputed e = SM3(Z_A ‖ M) with a fresh random k (GmSSL's generator)."""
        if len(digest) != 32:
            raise ValueError("an SM2 digest e is 32 bytes")
        der = gmssl_pyx.sm2_sign_sm3_digest(self._d, bytes(digest))
        r, s = decode_dss_signature(der)
        return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")

    def __repr__(self) -> str:
        fingerprint = _fingerprint(self._public.public_bytes())
        return f"Sm2PrivateKey(public_fingerprint={fingerprint!r}, private=<hidden>)"
