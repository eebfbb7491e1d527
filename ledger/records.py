"""Ledger records: what one authorised operation looks like as a leaf.

A leaf is the RFC 8785 canonical JSON of the record, so any party can rebuild the
exact bytes that were hashed. Payloads never enter the ledger, only their digest.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.canonical import canonical_json
from ledger.errors import InvalidRecord

_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_LIMITS = {
    "actor": 128,
    "subject_org": 64,
    "object_type": 64,
    "object_id": 128,
    "action": 64,
    "decision_id": 64,
    "payload_digest": 160,
    "purpose": 256,
    "request_id": 64,
}


def rfc3339_ms(ts: datetime) -> str:
    """`2026-11-26T15:04:05.123Z`: UTC with millisecond precision, as every leaf has it."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise InvalidRecord("ledger timestamps must be timezone-aware")
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class LedgerRecord:
    """One authorised operation (the leaf's fields, as the ledger issue names them)."""

    type: str
    action: str
    object_type: str
    object_id: str | None
    actor: str | None
    subject_org: str | None
    decision_id: str | None
    purpose: str | None
    request_id: str | None
    payload_digest: str | None
    ts: datetime
    _ts_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _TYPE.match(self.type):
            raise InvalidRecord("record type must be a dotted lower-case name", type=self.type)
        for name, limit in _LIMITS.items():
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise InvalidRecord(f"{name} must be a string of at most {limit} characters")
        object.__setattr__(self, "_ts_text", rfc3339_ms(self.ts))

    def fields(self) -> dict[str, Any]:
        """The record as the leaf holds it: every field, the timestamp as RFC 3339 text."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        out["ts"] = self._ts_text
        return out

    def leaf(self) -> bytes:
        """The exact leaf bytes: canonical JSON of `fields()`."""
        return canonical_json(self.fields())


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    """The record a leaf holds, checked to be in canonical form."""
    try:
        value = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRecord("leaf is not JSON") from exc
    if not isinstance(value, dict) or canonical_json(value) != leaf:
        raise InvalidRecord("leaf is not a canonical JSON object")
    return value
