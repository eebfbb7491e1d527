"""Paillier encryption for exact integer and fixed-point sums: `phe` keys plus a fast pdx path.

Keys are `phe` keys (2048-bit modulus by default); decryption is `phe`'s
(`PrivateKey.raw_decrypt`, CRT with gmpy2), so everything the pdx path produces is an
ordinary Paillier ciphertext that `phe` decrypts, and `to_phe` wraps one as a
`phe.EncryptedNumber`.

The pdx encryption path (`FastEncryptor`) computes c = (1 + m·n) · r mod n², where:

1. g = n + 1, so g^m = 1 + m·n mod n² costs one multiplication (phe does this too).
2. The randomness is r = hs^α mod n² with hs = h^n mod n², h = -x² mod n for a random x,
   and a short exponent α of n_bits/2 bits: the Damgård–Jurik–Nielsen variant (DJN,
   "A generalization of Paillier's public-key system with applications to electronic
   voting", IJIS 2010, §4.1), as used by Intel's Paillier Cryptosystem Library
   (`PublicKey::applyDJNObfuscator`). hs^α = (h^α)^n is an n-th power, so the result
   is a standard Paillier ciphertext with randomness h^α. Security rests on DCR plus
   the DJN assumption that h^α with short α is indistinguishable from a random n-th
   residue, the same trade IPCL makes.
3. hs is a fixed base, so hs^α is a fixed-base windowed product: a table
   T[i][d] = hs^(d·2^(w·i)) mod n² (w = 8 bits: 128 rows × 256 entries ≈ 17 MB for a
   2048-bit key, built once per encryptor in ~0.3 s) turns each encryption into ~128
   modular multiplications instead of a 2048-bit-exponent modular exponentiation.
4. Several values share one ciphertext (`Packing`): fixed-width slots of `slot_bits`
   with `headroom_bits` of space so that up to 2^headroom ciphertexts can be added
   without a carry crossing a slot boundary. Values are signed; each slot stores
   value + bias and the decoder subtracts addends·bias.

All arithmetic uses gmpy2. Sums are exact: integers, or fixed-point integers with a
stated number of decimals (`encode_fixed`/`decode_fixed`).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import gmpy2  # type: ignore[import-untyped]
import phe  # type: ignore[import-untyped]

from sandbox.errors import HomomorphicMismatch, InvalidParameters, ValueOutOfRange

KEY_BITS = 2048
RandBits = Callable[[int], int]


def generate_keypair(bits: int = KEY_BITS) -> tuple[Any, Any]:
    """A fresh `(phe.PaillierPublicKey, phe.PaillierPrivateKey)` with an n of `bits` bits."""
    if bits < 1024:
        raise InvalidParameters("Paillier keys shorter than 1024 bits are not allowed")
    keys: tuple[Any, Any] = phe.generate_paillier_keypair(n_length=bits)
    return keys


def public_key_from_n(n: int) -> Any:
    """The `phe.PaillierPublicKey` for modulus n (what a node receives with a job)."""
    return phe.PaillierPublicKey(n)


# -- fixed point ------------------------------------------------------------------------------


def encode_fixed(value: str | int | Decimal, decimals: int) -> int:
    """The exact integer value · 10^decimals integer (round half to even beyond `decimals`)."""
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidParameters("value is not a number") from None
    if not d.is_finite():
        raise InvalidParameters("value is not finite")
    return int(d.scaleb(decimals).to_integral_value(rounding=ROUND_HALF_EVEN))


def decode_fixed(value: int, decimals: int) -> Fraction:
    """The exact rational an `encode_fixed` integer (or a sum of them) stands for."""
    return Fraction(value, 10**decimals)


# -- packing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packing:
    """Slot layout of packed plaintexts: signed values of `slot_bits - headroom_bits` bits."""

    slot_bits: int = 128
    headroom_bits: int = 16

    def __post_init__(self) -> None:
        if not 8 <= self.headroom_bits < self.slot_bits:
            raise InvalidParameters("headroom must be at least 8 bits and less than the slot")

    @property
    def value_bits(self) -> int:
        return self.slot_bits - self.headroom_bits

    @property
    def bias(self) -> int:
        return 1 << (self.value_bits - 1)

    @property
    def max_addends(self) -> int:
        return 1 << self.headroom_bits

    def slots(self, n: int) -> int:
        """Slots per ciphertext under modulus n (packed plaintext stays below 2^(|n|-1))."""
        return (n.bit_length() - 1) // self.slot_bits

    def check(self, value: int) -> None:
        if not -self.bias <= value < self.bias:
            raise ValueOutOfRange(
                f"value needs more than {self.value_bits} signed bits", value_bits=self.value_bits
            )

    def pack(self, values: Sequence[int], n: int) -> list[int]:
        """Plaintexts (one per ciphertext) holding `values` in slot order."""
        per = self.slots(n)
        out: list[int] = []
        for start in range(0, len(values), per):
            acc = 0
            for j, v in enumerate(values[start : start + per]):
                self.check(v)
                acc |= (v + self.bias) << (j * self.slot_bits)
            out.append(acc)
        return out or [0]

    def unpack(self, plaintexts: Sequence[int], length: int, addends: int, n: int) -> list[int]:
        """Slot values of `plaintexts`, each the sum of `addends` packed values."""
        per, mask = self.slots(n), (1 << self.slot_bits) - 1
        out: list[int] = []
        for p in plaintexts:
            for j in range(per):
                if len(out) == length:
                    break
                out.append(((p >> (j * self.slot_bits)) & mask) - addends * self.bias)
        if len(out) != length:
            raise HomomorphicMismatch("packed vector is shorter than its declared length")
        return out


# -- the fast encryptor -----------------------------------------------------------------------


class FastEncryptor:
    """Paillier encryption under a public key, pdx path (see the module docstring).

    `precompute_after` encryptions trigger building the fixed-base table; before that
    each r = hs^α is one gmpy2 powmod with a 1024-bit exponent (about half the cost of
    phe's 2048-bit one). `rand_bits` is the randomness source (tests pass a seeded one).
    """

    def __init__(
        self,
        public_key: Any,
        *,
        window: int = 8,
        precompute_after: int = 32,
        rand_bits: RandBits = secrets.randbits,
    ) -> None:
        self.public_key = public_key
        self.n = gmpy2.mpz(public_key.n)
        self.nsquare = self.n * self.n
        self._rand = rand_bits
        self.alpha_bits = (int(self.n.bit_length()) + 1) // 2
        x = self._unit()
        h = (-(x * x)) % self.n
        self.hs = gmpy2.powmod(h, self.n, self.nsquare)
        self._window = window
        self._precompute_after = precompute_after
        self._count = 0
        self._table: list[list[Any]] | None = None

    def _unit(self) -> Any:
        while True:
            x = gmpy2.mpz(self._rand(int(self.n.bit_length()) + 128)) % self.n
            if x > 1 and gmpy2.gcd(x, self.n) == 1:
                return x

    def precompute(self) -> None:
        """Build the fixed-base table T[i][d] = hs^(d·2^(w·i)) mod n²."""
        if self._table is not None:
            return
        w, n2 = self._window, self.nsquare
        rows = math.ceil(self.alpha_bits / w)
        table: list[list[Any]] = []
        base = self.hs
        for _ in range(rows):
            row = [gmpy2.mpz(1), base]
            for _ in range(2, 1 << w):
                row.append(row[-1] * base % n2)
            table.append(row)
            base = row[-1] * base % n2  # base^(2^w)
        self._table = table

    def obfuscator(self) -> Any:
        """A fresh r^n mod n² (as hs^α)."""
        alpha = self._rand(self.alpha_bits)
        self._count += 1
        if self._table is None and self._count > self._precompute_after:
            self.precompute()
        if self._table is None:
            return gmpy2.powmod(self.hs, alpha, self.nsquare)
        w, mask, n2 = self._window, (1 << self._window) - 1, self.nsquare
        acc = gmpy2.mpz(1)
        for row in self._table:
            digit = alpha & mask
            if digit:
                acc = acc * row[digit] % n2
            alpha >>= w
        return acc

    def encrypt_raw(self, m: int) -> int:
        """Ciphertext of m mod n (negative m wraps as phe's encoding expects)."""
        gm = (1 + (gmpy2.mpz(m) % self.n) * self.n) % self.nsquare
        return int(gm * self.obfuscator() % self.nsquare)

    def encrypt_packed(self, values: Sequence[int], packing: Packing) -> PackedVector:
        """Encrypt a vector of signed integers into packed ciphertexts."""
        plaintexts = packing.pack(values, int(self.n))
        if len(plaintexts) > self._precompute_after:
            self.precompute()
        cts = tuple(self.encrypt_raw(p) for p in plaintexts)
        return PackedVector(int(self.n), cts, len(values), 1, packing)


def to_phe(public_key: Any, ciphertext: int, exponent: int = 0) -> Any:
    """Wrap a raw ciphertext as a `phe.EncryptedNumber` (interoperation with phe)."""
    return phe.EncryptedNumber(public_key, ciphertext, exponent)


# -- packed vectors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedVector:
    """An encrypted vector of signed integers: packed Paillier ciphertexts under modulus n.

    `addends` counts how many encrypted vectors were summed into this one (the decoder
    needs it to remove the slot biases). Adding needs only the public modulus.
    """

    n: int
    ciphertexts: tuple[int, ...]
    length: int
    addends: int
    packing: Packing

    def __add__(self, other: PackedVector) -> PackedVector:
        if (self.n, self.length, self.packing) != (other.n, other.length, other.packing):
            raise HomomorphicMismatch("packed vectors differ in key, length or packing")
        if len(self.ciphertexts) != len(other.ciphertexts):
            raise HomomorphicMismatch("packed vectors differ in ciphertext count")
        addends = self.addends + other.addends
        if addends > self.packing.max_addends:
            raise HomomorphicMismatch("too many addends for the packing headroom")
        n2 = gmpy2.mpz(self.n) ** 2
        cts = tuple(
            int(gmpy2.mpz(a) * b % n2)
            for a, b in zip(self.ciphertexts, other.ciphertexts, strict=True)
        )
        return PackedVector(self.n, cts, self.length, addends, self.packing)

    def decrypt(self, private_key: Any) -> list[int]:
        """The summed integer vector (phe's CRT decryption, then slot decoding)."""
        if private_key.public_key.n != self.n:
            raise HomomorphicMismatch("vector was not encrypted under this key")
        plaintexts = [private_key.raw_decrypt(c) for c in self.ciphertexts]
        return self.packing.unpack(plaintexts, self.length, self.addends, self.n)

    def to_bytes(self) -> bytes:
        """The header JSON and a newline, then each ciphertext as 2·|n| bytes big-endian."""
        width = _ct_width(self.n)
        header = {
            "n": format(self.n, "x"),
            "length": self.length,
            "addends": self.addends,
            "slot_bits": self.packing.slot_bits,
            "headroom_bits": self.packing.headroom_bits,
            "count": len(self.ciphertexts),
        }
        body = b"".join(c.to_bytes(width, "big") for c in self.ciphertexts)
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body

    @classmethod
    def from_bytes(cls, data: bytes, *, expect_n: int | None = None) -> PackedVector:
        """Parse `to_bytes` output, checking every size and (optionally) the modulus."""
        head, sep, body = data.partition(b"\n")
        try:
            h = json.loads(head) if sep else {}
            n = int(h["n"], 16)
            packing = Packing(int(h["slot_bits"]), int(h["headroom_bits"]))
            length, addends, count = int(h["length"]), int(h["addends"]), int(h["count"])
        except (ValueError, KeyError, TypeError):
            raise HomomorphicMismatch("malformed packed Paillier vector") from None
        if expect_n is not None and n != expect_n:
            raise HomomorphicMismatch("vector was not encrypted under the job key")
        width = _ct_width(n)
        per = packing.slots(n)
        if (
            count < 1
            or len(body) != count * width
            or not 0 <= length <= count * per
            or not 1 <= addends <= packing.max_addends
        ):
            raise HomomorphicMismatch("malformed packed Paillier vector")
        n2 = n * n
        cts = tuple(int.from_bytes(body[i : i + width], "big") for i in range(0, len(body), width))
        if any(not 0 < c < n2 for c in cts):
            raise HomomorphicMismatch("ciphertext outside Z*_{n^2}")
        return cls(n, cts, length, addends, packing)


def _ct_width(n: int) -> int:
    return (2 * n.bit_length() + 7) // 8
