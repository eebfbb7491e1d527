"""The prime-order group of ECDH-PSI: P-256, RFC 9380 hashing, x-only compared blindings.

Safe surface for `sandbox.psi`: `psi_group(dst)` gives a `PsiGroup` with

- `hash_to_point(data)`: RFC 9380 `P256_XMD:SHA-256_SSWU_RO_` under the group's DST
  (crypto._h2c_p256, checked against RFC 9380 Appendix J.1.1);
- `new_scalar()`: a fresh secret exponent (an OpenSSL P-256 private key);
- `blind(element, key)`: x(key·P), 32 bytes, computed by OpenSSL ECDH (`exchange`);
- `encode(point)` / `decode(bytes)`: the x-only encoding and its validated inverse;
- `encode_point(point)`: the 65-byte uncompressed SEC1 encoding 04‖x‖y.

Why x-only works (the "x-only" ECDH-PSI encoding): ECDH returns only the abscissa of
key·P. x(k·P) = x(k·(−P)) because −P = (x, −y) and k·(−P) = −(k·P), so decompressing an
encoded element to either root and blinding it again gives the same next encoding:
x(k2·(±k1·P)) = x(k1·k2·P). Two parties' double blindings of the same identifier therefore
agree whatever root each picks, and encodings are 32 bytes instead of 33.

What travels (the bulk path): a singly blinded element, which the peer blinds again, is
sent as an uncompressed SEC1 point (65 bytes): the peer's libcrypto checks it is on the
curve without the square root an x-only element costs to decompress (~13 µs of ~150 µs
per identifier). Sending y hides nothing less: y is determined by x up to sign, which the
peer could compute itself. The doubly blinded values that are compared stay x-only.

`blind_reference` is the same operation in pure Python/gmpy2 (crypto._h2c_p256.scalar_mult):
the fallback and the cross-check of the OpenSSL path (7× slower in a quick run here;
`pdx bench vertical` measures both in the same run).

Bulk path (`hash_blind_packed`: 32-byte messages in, 65-byte points out; `blind_packed`:
65-byte points in, 32-byte abscissae out; and the worker entries `hash_blind_chunk`,
`blind_chunk`): concatenated inputs in, concatenated encodings out, no per-element Python
objects between the parties' steps. It hashes a whole chunk with one field inversion per
batch (`_h2c_p256.hash_to_curve_many`) and multiplies through the system libcrypto in one
loop (`_ossl_p256`). Where Intel's crypto_mb loads (`_mb_p256`: eight lanes of AVX-512
IFMA, ~12.6 µs a multiplication against libcrypto's ~55), both blindings run there: the
second (`blind_packed`, x-only out) is ECDH itself; the first (`hash_blind_packed`, whole
points out) takes x(k·H) and x((k+1)·H) from the lanes and recovers y from them
(`_h2c_p256.recover_sec1`, no square root), giving libcrypto's very point k·H. Keys near
0 or n stay on libcrypto (`_lane_scalar`). The abscissae are byte-for-byte those of `blind` and
`hash_and_blind_many` (tests/test_psi_fast.py). When libcrypto.so.3 cannot be loaded those
remain the path; the fallback's points then carry the even-y root of ±key·H(m), which
blinds again to the same abscissa.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec

from crypto import _h2c_p256 as h2c
from crypto import _mb_p256 as mb
from crypto import _ossl_p256 as ossl
from crypto.errors import InvalidGroupElement

SUITE = "P256_XMD:SHA-256_SSWU_RO_"
ELEMENT_BYTES = 32
POINT_BYTES = ossl.POINT_BYTES  # 04‖x‖y: the singly blinded elements the peer blinds again
DEFAULT_DST = b"PDX-PSI-V01-CS01-with-" + SUITE.encode()
_CURVE = ec.SECP256R1()
_ECDH = ec.ECDH()


@dataclass(frozen=True)
class GroupPoint:
    """An affine P-256 point (never the identity: hashing to it is refused)."""

    x: int
    y: int


class PsiScalar:
    """A secret exponent in [1, n); opaque apart from `export` (for the party's own workers)."""

    __slots__ = ("_fast", "_key", "_lanes", "_next")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._fast: ossl.Scalar | None = None
        self._lanes: mb.Scalar | Literal[False] | None = None  # False: checked, not usable
        self._next: mb.Scalar | Literal[False] | None = None

    def _ossl(self) -> ossl.Scalar:
        """The same exponent as a libcrypto BIGNUM (made once, for the bulk path)."""
        if self._fast is None:
            self._fast = ossl.Scalar(self.export())
        return self._fast

    def _mb(self) -> mb.Scalar | None:
        """The same exponent as crypto_mb's limbs (made once), or None: keep libcrypto.

        None unless crypto_mb loads and k lies in the lanes' safe range (`_lane_scalar`).
        """
        if self._lanes is None:
            k = int.from_bytes(self.export(), "big")
            self._lanes = (_lane_scalar(k) if mb.available() else None) or False
        return self._lanes or None

    def _mb_pair(self) -> tuple[mb.Scalar, mb.Scalar] | None:
        """The exponent and its successor as crypto_mb limbs (for the y recovery), or None."""
        first = self._mb()
        if first is None:
            return None
        if self._next is None:
            self._next = _lane_scalar(int.from_bytes(self.export(), "big") + 1) or False
        return (first, self._next) if self._next else None

    def export(self) -> bytes:
        """32 bytes big-endian: only for handing the key to the same party's worker processes."""
        value = self._key.private_numbers().private_value
        return int(value).to_bytes(32, "big")

    def __repr__(self) -> str:
        return "PsiScalar(<secret>)"


class PsiGroup:
    """P-256 with RFC 9380 hashing under one DST (one DST per job: domain separation)."""

    suite = SUITE
    element_bytes = ELEMENT_BYTES
    point_bytes = POINT_BYTES

    def __init__(self, dst: bytes = DEFAULT_DST) -> None:
        if not 16 <= len(dst) <= 255:  # RFC 9380 §3.1: at least 16 bytes recommended
            raise ValueError("hash-to-curve DST must be 16 to 255 bytes")
        self.dst = dst
        # crypto_mb loads and checks itself once per process, on first use: here, so that a
        # session pool (`sandbox.session_pool`) forks its workers with it loaded, rather
        # than each worker loading it again inside a request.
        mb.available()

    # -- points and encodings ------------------------------------------------------------

    def hash_to_point(self, data: bytes) -> GroupPoint:
        """RFC 9380 hash_to_curve of `data` under this group's DST."""
        point = h2c.hash_to_curve(data, self.dst)
        if point is None:  # probability ~2^-256; refuse rather than encode the identity
            raise InvalidGroupElement("hash to the identity")
        return GroupPoint(*point)

    def encode(self, point: GroupPoint) -> bytes:
        """The x-only encoding (32 bytes big-endian)."""
        return point.x.to_bytes(ELEMENT_BYTES, "big")

    def encode_point(self, point: GroupPoint) -> bytes:
        """The uncompressed SEC1 encoding 04‖x‖y (65 bytes)."""
        return b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")

    def decode(self, data: bytes) -> GroupPoint:
        """The point with abscissa `data` and even ordinate; refuses anything off the curve."""
        if len(data) != ELEMENT_BYTES:
            raise InvalidGroupElement("group element must be 32 bytes")
        point = h2c.lift_x(int.from_bytes(data, "big"))
        if point is None:
            raise InvalidGroupElement("not a P-256 abscissa")
        return GroupPoint(*point)

    # -- scalars -------------------------------------------------------------------------

    def new_scalar(self) -> PsiScalar:
        """A fresh uniformly random exponent (OpenSSL's key generation)."""
        return PsiScalar(ec.generate_private_key(_CURVE))

    def load_scalar(self, data: bytes) -> PsiScalar:
        """The inverse of `PsiScalar.export`."""
        value = int.from_bytes(data, "big")
        if len(data) != 32 or not 1 <= value < h2c.N:
            raise InvalidGroupElement("scalar out of range")
        return PsiScalar(ec.derive_private_key(value, _CURVE))

    # -- blinding ------------------------------------------------------------------------

    def blind(self, element: GroupPoint | bytes, key: PsiScalar) -> bytes:
        """x(key·P) for a point or an encoded element, x-only or SEC1 (OpenSSL ECDH)."""
        if isinstance(element, GroupPoint):
            public = ec.EllipticCurvePublicNumbers(element.x, element.y, _CURVE).public_key()
        else:
            public = _load_x(element)
        return key._key.exchange(_ECDH, public)

    def blind_many(self, elements: Iterable[bytes], key: PsiScalar) -> list[bytes]:
        """`blind` over encoded elements (the hot loop of the second blinding)."""
        exchange, private = _ECDH, key._key
        return [private.exchange(exchange, _load_x(e)) for e in elements]

    def hash_and_blind_many(self, messages: Iterable[bytes], key: PsiScalar) -> list[bytes]:
        """x(key·H(m)) for each message: hash, then the first blinding, without re-encoding."""
        out: list[bytes] = []
        private, dst = key._key, self.dst
        for m in messages:
            point = h2c.hash_to_curve(m, dst)
            if point is None:
                raise InvalidGroupElement("hash to the identity")
            public = ec.EllipticCurvePublicNumbers(point[0], point[1], _CURVE).public_key()
            out.append(private.exchange(_ECDH, public))
        return out

    def blind_packed(self, points: bytes, key: PsiScalar) -> bytes:
        """x(key·P) for concatenated 65-byte SEC1 points, concatenated 32-byte abscissae out.

        Each point is checked on the curve; the error names the first bad one (`index`).
        """
        if len(points) % POINT_BYTES:
            raise InvalidGroupElement("blinded points must be 65-byte SEC1 encodings")
        lanes = key._mb()
        if lanes is not None:  # eight lanes of AVX-512 IFMA: ~4x libcrypto here
            try:
                return mb.mul_sec1_x(lanes, points)
            except mb.MbError as exc:
                raise InvalidGroupElement("not a P-256 point", index=exc.index) from exc
        if not ossl.available():
            items = [points[i : i + POINT_BYTES] for i in range(0, len(points), POINT_BYTES)]
            return b"".join(self.blind_many(items, key))
        try:
            return ossl.mul_sec1(key._ossl(), points, full=False)
        except ossl.OsslError as exc:
            raise InvalidGroupElement("not a P-256 point", index=exc.index) from exc

    def lift_packed(self, abscissae: bytes) -> bytes:
        """04‖x‖y (even root) for concatenated 32-byte x-only elements, each checked on P-256.

        For a peer that sends x(k·H(m)) only (the enterprise's SDK, issue 18): blinding
        either root gives the same next abscissa. The error names the first bad element.
        """
        if len(abscissae) % ELEMENT_BYTES:
            raise InvalidGroupElement("x-only elements must be 32 bytes")
        out = []
        for i in range(0, len(abscissae), ELEMENT_BYTES):
            x = abscissae[i : i + ELEMENT_BYTES]
            point = h2c.lift_x(int.from_bytes(x, "big"))
            if point is None:
                raise InvalidGroupElement("not a P-256 abscissa", index=i // ELEMENT_BYTES)
            out.append(b"\x04" + x + point[1].to_bytes(32, "big"))
        return b"".join(out)

    def hash_blind_packed(self, messages: bytes, key: PsiScalar) -> bytes:
        """key·H(m) as 65-byte SEC1 points, for concatenated 32-byte messages."""
        if len(messages) % ELEMENT_BYTES:
            raise InvalidGroupElement("PSI messages must be 32 bytes")
        items = [messages[i : i + ELEMENT_BYTES] for i in range(0, len(messages), 32)]
        if not ossl.available():
            return b"".join(_even_point(x) for x in self.hash_and_blind_many(items, key))
        points = h2c.hash_to_curve_many(items, self.dst)
        if any(p is None for p in points):
            raise InvalidGroupElement("hash to the identity")
        packed = b"".join(
            b"\x04" + p[0].to_bytes(32, "big") + p[1].to_bytes(32, "big")
            for p in points
            if p is not None
        )
        pair = key._mb_pair()
        if pair is not None:  # x(k·H) and x((k+1)·H) on the lanes, then y without a root
            try:
                xq, xr = mb.mul_sec1_x(pair[0], packed), mb.mul_sec1_x(pair[1], packed)
                return h2c.recover_sec1([p for p in points if p is not None], xq, xr)
            except (mb.MbError, ValueError) as exc:  # pragma: no cover - H(m) is on P-256
                raise InvalidGroupElement("hash to an invalid point") from exc
        try:
            return ossl.mul_sec1(key._ossl(), packed, full=True)
        except ossl.OsslError as exc:  # pragma: no cover - hash_to_curve's points are on P-256
            raise InvalidGroupElement("hash to an invalid point") from exc

    def blind_reference(self, element: GroupPoint | bytes, key: PsiScalar) -> bytes:
        """`blind` in pure Python/gmpy2 (fallback and cross-check; variable time)."""
        point = element if isinstance(element, GroupPoint) else self.decode(element)
        k = int.from_bytes(key.export(), "big")
        out = h2c.scalar_mult(k, (point.x, point.y))
        if out is None:
            raise InvalidGroupElement("blinded to the identity")
        return out[0].to_bytes(ELEMENT_BYTES, "big")


_LANE_MARGIN = 1 << 64
_SPOT = [b"PDX-PSI-lanes-spot-check-%d" % i for i in range(mb.LANES)]


def _lane_scalar(k: int) -> mb.Scalar | None:
    """The exponent k as crypto_mb limbs if the lanes multiply by it as libcrypto does, else None.

    crypto_mb's windowed multiplication misses for some structured scalars (k = n − 2 gives
    a wrong abscissa for ~3% of points here: an exceptional case of its addition), so the
    lanes only take k with 2^64 ≤ k ≤ n − 1 − 2^64 (a fresh key is outside with probability
    ~2^-191) and whose products with eight fixed points equal libcrypto's.
    Also k ≢ ±1 there, which the first blinding's y recovery needs.
    """
    if not _LANE_MARGIN <= k <= h2c.N - 1 - _LANE_MARGIN:
        return None
    lanes, value = mb.Scalar(k.to_bytes(32, "big")), k.to_bytes(32, "big")
    points = h2c.hash_to_curve_many(_SPOT, DEFAULT_DST)
    spot = b"".join(
        b"\x04" + p[0].to_bytes(32, "big") + p[1].to_bytes(32, "big") for p in points if p
    )
    if mb.mul_sec1_x(lanes, spot) != ossl.mul_sec1(ossl.Scalar(value), spot, full=False):
        return None  # pragma: no cover - no such k is known
    return lanes


def _load_x(data: bytes) -> ec.EllipticCurvePublicKey:
    """An x-only element (32 bytes) or an uncompressed SEC1 point (65), validated."""
    if len(data) == ELEMENT_BYTES:
        encoded = b"\x02" + data
    elif len(data) == POINT_BYTES and data[0] == 4:
        encoded = data
    else:
        raise InvalidGroupElement("group element must be 32 bytes or an uncompressed point")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, encoded)
    except ValueError:
        raise InvalidGroupElement("not a P-256 point") from None


def _even_point(x: bytes) -> bytes:
    """04‖x‖y with the even root y (fallback path: ±P blind to the same abscissa)."""
    point = h2c.lift_x(int.from_bytes(x, "big"))
    if point is None:  # pragma: no cover - x came out of ECDH on P-256
        raise InvalidGroupElement("not a P-256 abscissa")
    return b"\x04" + x + point[1].to_bytes(32, "big")


def psi_group(dst: bytes = DEFAULT_DST) -> PsiGroup:
    """The ECDH-PSI group (P-256, RFC 9380 RO hashing) under hash-to-curve DST `dst`."""
    return PsiGroup(dst)


def blind_batch(dst: bytes, key_bytes: bytes, elements: Sequence[bytes]) -> list[bytes]:
    """Picklable worker entry: `blind_many` with an exported key (multiprocessing pools)."""
    group = PsiGroup(dst)
    return group.blind_many(elements, group.load_scalar(key_bytes))


def hash_blind_batch(dst: bytes, key_bytes: bytes, messages: Sequence[bytes]) -> list[bytes]:
    """Picklable worker entry: `hash_and_blind_many` with an exported key."""
    group = PsiGroup(dst)
    return group.hash_and_blind_many(messages, group.load_scalar(key_bytes))


def blind_chunk(dst: bytes, key_bytes: bytes, elements: bytes) -> bytes:
    """Picklable worker entry: `blind_packed` with an exported key (one bytes in, one out).

    Points arrive 65 bytes each, abscissae leave 32 bytes each.
    """
    group = PsiGroup(dst)
    return group.blind_packed(elements, group.load_scalar(key_bytes))


def hash_blind_chunk(dst: bytes, key_bytes: bytes, messages: bytes) -> bytes:
    """Picklable worker entry: `hash_blind_packed` with an exported key."""
    group = PsiGroup(dst)
    return group.hash_blind_packed(messages, group.load_scalar(key_bytes))
