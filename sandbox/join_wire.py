"""What both sides of a private join share: the step framing and one record's value vector.

`sandbox.join_party` (two providers' datasets) and `sandbox.cohort_party` (a provider
against the requester's own cohort) frame their messages and encode a record's values
the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from sandbox.errors import InvalidParameters
from sandbox.join_params import JoinPlan
from sandbox.noise_shares import NoisePlan
from sandbox.stats import _MISSING, _fixed

__all__ = ["ct_width", "frame", "on_lattice", "unframe", "value_vector"]


def frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    """A JSON header line, then raw bytes (what every step returns and takes)."""
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def unframe(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, sep, body = data.partition(b"\n")
    try:
        header = json.loads(head) if sep else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise InvalidParameters("malformed join message")
    return header, body


def ct_width(n: int) -> int:
    """Bytes of one Paillier ciphertext (mod n²) under modulus `n`."""
    return (2 * n.bit_length() + 7) // 8


def value_vector(plan: JoinPlan, row: list[str], lo: int | None, hi: int | None) -> list[int]:
    """(1, then per column: present, value[, value²]) in the query's field order."""
    q = plan.query
    out = [1]
    for j, _ in enumerate(q.columns if q.op != "stats.count" else ()):
        text = row[1 + j].strip()
        if text.lower() in _MISSING:
            out += [0, 0] + ([0] if q.op == "stats.variance" else [])
            continue
        v = _fixed(text, q.decimals)
        if lo is not None and hi is not None:
            v = min(max(v, lo), hi)
        out += [1, v] + ([v * v] if q.op == "stats.variance" else [])
    return out


def on_lattice(plan: NoisePlan, fields: Sequence[str], vec: list[int], q: Any) -> list[int]:
    """One record's fixed-point vector on the DP lattice (|each| stays within its sensitivity)."""
    out = []
    for i, (name, v) in enumerate(zip(fields, vec, strict=True)):
        power = {"sum": 1, "sumsq": 2}.get(name.split(":", 1)[0], 0)
        out.append(plan.encode(i, Fraction(v, 10 ** (q.decimals * power))))
    return out
