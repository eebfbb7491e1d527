"""Keyed ledger commitments: what a computation asked and released, provable but not guessable.

A plain SHA-256 of a small document on a public ledger is a dictionary attack away from
its content: a count of 200, a mean over one of a few hundred parameter choices
(issue 14, "Ledger digests"). A computation's ledger entries therefore carry
`hmac-sha256:<hex>` = HMAC-SHA256(k, "pdx:commitment:<kind>" ‖ 0x00 ‖ document) under a
fresh 256-bit key k per computation and kind (RFC 2104; a keyed hash is a hiding and,
under collision resistance, binding commitment when k is uniformly random and kept
secret). The platform keeps k (`computation_commitments`) and hands it only to the
parties: the requester opens `query` and `result`, each provider opens `query` (and
`result` when it reviews the release). A party checks its own entry with `verify`
against the public, witness-cosigned checkpoint; anyone else sees 256 bits of noise.

Public documents (a dataset's analysis rules) keep a plain digest (`plain_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.privacy_tables import CommitmentOpening

__all__ = [
    "PREFIX",
    "canonical",
    "commit",
    "commitment_of",
    "openings",
    "plain_digest",
    "record_commitment",
    "verify",
]

PREFIX = "hmac-sha256:"
KINDS = ("query", "result")


def canonical(doc: Any) -> bytes:
    """The bytes a JSON document is committed as (sorted keys, no spaces, ASCII escapes).

    The same bytes as a released result's sealed body (`exchange.computations.runs`).
    """
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def plain_digest(doc: Any) -> str:
    """`sha256:<hex>` of a public document's canonical bytes."""
    return "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()


def commit(key: bytes, kind: str, data: bytes) -> str:
    """HMAC-SHA256 of `data` under `key`, domain-separated by `kind`."""
    if len(key) < 32:
        raise ValueError("a commitment key has at least 256 bits")
    mac = hmac.new(key, b"pdx:commitment:" + kind.encode() + b"\x00" + data, hashlib.sha256)
    return PREFIX + mac.hexdigest()


def verify(commitment: str, key_hex: str, kind: str, data: bytes) -> bool:
    """Whether `data` opens `commitment` under `key_hex` (constant-time compare)."""
    try:
        key = bytes.fromhex(key_hex)
        expected = commit(key, kind, data)
    except ValueError:
        return False
    return hmac.compare_digest(expected, commitment)


def record_commitment(
    session: Session,
    computation_id: str,
    kind: str,
    data: bytes,
    *,
    now: datetime,
    random: Callable[[int], bytes] = secrets.token_bytes,
) -> str:
    """Commit `data` under a fresh key kept for the parties; returns the ledger value."""
    if kind not in KINDS:
        raise ValueError(f"unknown commitment kind {kind!r}")
    key = random(32)
    value = commit(key, kind, data)
    row = session.get(CommitmentOpening, (computation_id, kind))
    if row is None:
        session.add(
            CommitmentOpening(
                computation_id=computation_id,
                kind=kind,
                key_hex=key.hex(),
                commitment=value,
                created_at=now,
            )
        )
    else:  # a re-run's result replaces the discarded one's (same transaction as its entry)
        row.key_hex, row.commitment, row.created_at = key.hex(), value, now
    return value


def commitment_of(session: Session, computation_id: str, kind: str) -> str | None:
    row = session.get(CommitmentOpening, (computation_id, kind))
    return row.commitment if row is not None else None


def openings(session: Session, computation_id: str, kinds: tuple[str, ...]) -> list[dict[str, str]]:
    """The openings of `kinds` for one computation (the caller checked who may see them)."""
    rows = session.scalars(
        select(CommitmentOpening)
        .where(
            CommitmentOpening.computation_id == computation_id,
            CommitmentOpening.kind.in_(kinds),
        )
        .order_by(CommitmentOpening.kind)
    )
    return [
        {"kind": r.kind, "commitment": r.commitment, "key": r.key_hex, "scheme": "hmac-sha256"}
        for r in rows
    ]
