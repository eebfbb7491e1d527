"""Pairwise masks that cancel in an aggregate, so no single provider's envelope reveals its partial.

Provider i and provider j (i < j) agree on a seed s_ij (X25519 between per-job keys whose
public halves the platform relays, then HKDF bound to the job: `crypto.agreement`). From
s_ij both expand the same vector r_ij of `MASK_BITS`-bit integers (SHAKE-256); i adds
+r_ij and j adds −r_ij to every slot of its partial before encrypting. Over all n
providers the masks sum to exactly zero, so the decrypted aggregate is unchanged, while
one provider's envelope, even decrypted, shows its partial plus masks unknown to anyone
who does not hold one of that provider's seeds.

Hiding is statistical: a partial value of at most 2^v bits under a uniform mask of
`MASK_BITS` bits is within 2^(v − MASK_BITS) of uniform in statistical distance (counts
and fixed-point sums of realistic data have v ≤ 64, so 2^−36 per slot; a sum of squares of
large values can be wider, and its hiding weaker by as much). Masks fit the packed
Paillier slots: with n ≤ 512 providers, |Σ masks of one provider| < 2^109, inside the
111-bit signed value of a `Packing()` slot, and they cancel before any carry matters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from sandbox.errors import InvalidParameters

__all__ = ["MASK_BITS", "MAX_PARTIES", "apply_masks", "mask_info", "mask_vector"]

MASK_BITS = 100
MAX_PARTIES = 512
_BYTES = (MASK_BITS + 7) // 8


def mask_info(job_id: str, fingerprint: str, a: int, b: int) -> bytes:
    """What a pair's seed is bound to: the job, its key and the (ordered) pair of indices."""
    lo, hi = sorted((a, b))
    return f"pdx:mask:{job_id}:{fingerprint}:{lo}:{hi}".encode()


def mask_vector(seed: bytes, length: int) -> list[int]:
    """`length` integers in [0, 2^MASK_BITS) expanded from a 32-byte seed (SHAKE-256)."""
    if len(seed) != 32:
        raise InvalidParameters("a mask seed is 32 bytes")
    stream = hashlib.shake_256(b"pdx-mask-v1" + seed).digest(length * _BYTES)
    top = (1 << MASK_BITS) - 1
    return [
        int.from_bytes(stream[i * _BYTES : (i + 1) * _BYTES], "big") & top for i in range(length)
    ]


def apply_masks(values: Sequence[int], me: int, seeds: Mapping[int, bytes]) -> list[int]:
    """`values` plus +r for each peer with a larger index, −r for each with a smaller one."""
    if len(seeds) + 1 > MAX_PARTIES or me in seeds:
        raise InvalidParameters("malformed mask seeds")
    out = [int(v) for v in values]
    for peer, seed in seeds.items():
        sign = 1 if me < peer else -1
        for i, r in enumerate(mask_vector(seed, len(out))):
            out[i] += sign * r
    return out
