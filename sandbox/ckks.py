"""CKKS (TenSEAL) for approximate sums of real vectors: job contexts, encrypt, add, decrypt.

Roles: the result party creates a `CkksSecretContext` (it alone holds the secret key)
and publishes `public_bytes()`, a serialised TenSEAL context holding only the public
encryption key (no secret key, no relinearisation or Galois keys: the protocol only
ever adds). Nodes load it with `load_public_context` and encrypt; the coordinator loads
the same public context to deserialise and add; only the result party decrypts.

Parameter sets (`CkksParams`), 128-bit security per the HE standard bounds SEAL
enforces (total coefficient modulus ≤ 109 bits at N = 4096, ≤ 218 at N = 8192):

* `COMPACT`: N = 4096, moduli (60, 49), scale 2^40: 2048 slots, |x| < 2^18 per slot,
  ~64 KB per ciphertext. Federated-learning updates.
* `WIDE`: N = 8192, moduli (60, 40, 60), scale 2^40: 4096 slots, |x| < 2^58 per slot,
  ~235 KB per ciphertext. Histograms and long vectors.

Precision. CKKS is approximate: encoding rounds x·2^40 to integer coefficients and
fresh encryption adds noise of a few dozen units at that scale, so each fresh
ciphertext carries an absolute error near 1e-8 per slot (measured maximum over 4096
slots ≈ 2e-8 at both parameter sets) independent of |x|; errors add under addition.
`CkksParams.tolerance(k)` states the bound we rely on for a sum of k fresh ciphertexts:
k · 2^-20 (≈ 9.5e-7 · k) absolute per slot, 50× the measured error, checked by the
tests. Counts (histograms) are rounded to the nearest integer after decryption, which
is exact while k · 2^-20 < 0.5, i.e. for any realistic number of nodes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import tenseal as ts  # type: ignore[import-untyped]

from sandbox.errors import HomomorphicMismatch, InvalidParameters, ValueOutOfRange

FloatArray = npt.NDArray[np.float64]
_LEN = struct.Struct(">Q")


@dataclass(frozen=True)
class CkksParams:
    """A CKKS parameter set; only addition is ever performed, so one data level suffices."""

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int = 40

    COMPACT: ClassVar[CkksParams]
    WIDE: ClassVar[CkksParams]

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def max_abs(self) -> float:
        """Largest |value| a slot may hold (sums included), with 2 bits of margin."""
        data_bits = sum(self.coeff_mod_bit_sizes[:-1])
        return float(2 ** (data_bits - self.scale_bits - 2))

    def tolerance(self, addends: int) -> float:
        """Absolute per-slot error bound after summing `addends` fresh ciphertexts."""
        return max(1, addends) * 2.0**-20

    def as_dict(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
        }


CkksParams.COMPACT = CkksParams(4096, (60, 49), 40)
CkksParams.WIDE = CkksParams(8192, (60, 40, 60), 40)


class CkksSecretContext:
    """The result party's CKKS context: holds the secret key; never leaves that party."""

    def __init__(self, params: CkksParams = CkksParams.WIDE) -> None:
        self.params = params
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            n_threads=1,
        )
        ctx.global_scale = 2.0**params.scale_bits
        self._ctx = ctx

    def public_bytes(self) -> bytes:
        """The public context for nodes and the coordinator: encryption key only."""
        pub = self._ctx.copy()
        pub.make_context_public()
        data: bytes = pub.serialize(
            save_public_key=True,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=False,
        )
        return data

    def decrypt(self, vector: CkksVector) -> FloatArray:
        """The plaintext of an (aggregated) vector."""
        parts = []
        for chunk in vector.chunks:
            chunk.link_context(self._ctx)
            parts.append(np.asarray(chunk.decrypt(), dtype=np.float64))
        flat = np.concatenate(parts) if parts else np.zeros(0)
        return flat[: vector.length]


def load_public_context(data: bytes) -> Any:
    """A TenSEAL context from `public_bytes()`; refuses one that carries a secret key."""
    try:
        ctx = ts.context_from(data, n_threads=1)
    except Exception:
        raise HomomorphicMismatch("malformed CKKS context") from None
    if ctx.is_private():
        raise HomomorphicMismatch("a public context must not carry the secret key")
    return ctx


@dataclass(frozen=True)
class CkksVector:
    """An encrypted real vector of `length` values split into ciphertext chunks of N/2 slots.

    `addends` counts the fresh vectors summed into it (for `CkksParams.tolerance`).
    """

    chunks: tuple[Any, ...]
    length: int
    addends: int = 1

    @classmethod
    def encrypt(cls, context: Any, values: Sequence[float] | FloatArray) -> CkksVector:
        """Encrypt `values` under a (public) context."""
        arr = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(arr)):
            raise InvalidParameters("cannot encrypt NaN or infinite values")
        slots = _slots(context)
        chunks = tuple(
            ts.ckks_vector(context, arr[i : i + slots]) for i in range(0, max(len(arr), 1), slots)
        )
        return cls(chunks, len(arr), 1)

    def __add__(self, other: CkksVector) -> CkksVector:
        if self.length != other.length or len(self.chunks) != len(other.chunks):
            raise HomomorphicMismatch("CKKS vectors differ in length")
        try:
            chunks = tuple(a + b for a, b in zip(self.chunks, other.chunks, strict=True))
        except Exception:
            raise HomomorphicMismatch("CKKS vectors cannot be added") from None
        return CkksVector(chunks, self.length, self.addends + other.addends)

    def to_bytes(self) -> bytes:
        """The header JSON and a newline, then each chunk as u64 length + SEAL serialisation."""
        header = {"length": self.length, "addends": self.addends, "chunks": len(self.chunks)}
        parts = [json.dumps(header, separators=(",", ":")).encode(), b"\n"]
        for chunk in self.chunks:
            raw = chunk.serialize()
            parts += [_LEN.pack(len(raw)), raw]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, context: Any, data: bytes) -> CkksVector:
        """Parse `to_bytes` output against a context (public or secret)."""
        head, sep, body = data.partition(b"\n")
        try:
            h = json.loads(head) if sep else {}
            length, addends, count = int(h["length"]), int(h["addends"]), int(h["chunks"])
        except (ValueError, KeyError, TypeError):
            raise HomomorphicMismatch("malformed CKKS vector") from None
        chunks = []
        pos = 0
        try:
            for _ in range(count):
                (size,) = _LEN.unpack_from(body, pos)
                pos += _LEN.size
                if pos + size > len(body):
                    raise HomomorphicMismatch("truncated CKKS vector")
                chunks.append(ts.ckks_vector_from(context, body[pos : pos + size]))
                pos += size
        except (struct.error, HomomorphicMismatch):
            raise HomomorphicMismatch("malformed CKKS vector") from None
        except Exception:
            raise HomomorphicMismatch("CKKS ciphertext does not match the job context") from None
        slots = _slots(context)
        if pos != len(body) or not 0 <= length <= count * slots or addends < 1:
            raise HomomorphicMismatch("malformed CKKS vector")
        return cls(tuple(chunks), length, addends)


class ZeroPool:
    """Encryptions of zero computed ahead of time, so that encrypting later is one addition.

    A public-key CKKS encryption of m is (p0·u + e0 + Δm, p1·u + e1): adding the encoded
    plaintext Δm to a fresh encryption of zero gives exactly the distribution of a fresh
    encryption of m. Like a Paillier r^n pool, this moves the costly part (sampling u,
    e0, e1 and the NTTs) to an offline phase, e.g. a federated node's set-up. Every
    pooled ciphertext is used once; an empty pool falls back to fresh encryption.
    """

    def __init__(self, context: Any, length: int, size: int) -> None:
        self._ctx = context
        self.length = length
        slots = _slots(context)
        self._widths = [min(slots, length - i) for i in range(0, max(length, 1), slots)]
        self._pool: list[tuple[Any, ...]] = [
            tuple(ts.ckks_vector(context, [0.0] * w) for w in self._widths) for _ in range(size)
        ]

    def __len__(self) -> int:
        return len(self._pool)

    def encrypt(self, values: Sequence[float] | FloatArray) -> CkksVector:
        arr = np.asarray(values, dtype=np.float64).ravel()
        if len(arr) != self.length:
            raise InvalidParameters("vector length differs from the pool's")
        if not np.all(np.isfinite(arr)):
            raise InvalidParameters("cannot encrypt NaN or infinite values")
        if not self._pool:
            return CkksVector.encrypt(self._ctx, arr)
        zeros = self._pool.pop()
        chunks, pos = [], 0
        for z, w in zip(zeros, self._widths, strict=True):
            chunks.append(z + arr[pos : pos + w].tolist())
            pos += w
        return CkksVector(tuple(chunks), len(arr), 1)


def _slots(context: Any) -> int:
    degree: int = context.seal_context().data.key_context_data().parms().poly_modulus_degree()
    return degree // 2


def check_range(values: FloatArray, params: CkksParams, addends: int = 1) -> None:
    """Refuse values whose sum over `addends` parties could exceed the slot range."""
    if values.size and float(np.max(np.abs(values))) * addends >= params.max_abs:
        raise ValueOutOfRange("value too large for the CKKS parameters", max_abs=params.max_abs)
