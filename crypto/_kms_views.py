"""What the KMS reports: inventory lines, rotation status, destruction requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crypto.keymaterial import algorithm_info, aware, row_fields
from crypto.models import DestroyRequestRecord, KeyRecord

DEFAULT_BATCH_SIZE = 500
DEFAULT_DESTROY_REQUEST_TTL = timedelta(days=3)

_PENDING, _EXECUTED, _CANCELLED, _EXPIRED = "pending", "executed", "cancelled", "expired"


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    """One line of the key inventory (docs/compliance.md CRY-14).

    Type, length, owner, purpose, validity and state.

    `type` is "symmetric" or "asymmetric"; `length` in bits. `location` says where the
    secret lives: the root backend's kind for the root key, "database (wrapped)" for
    the rest. `data_keys` counts the live data keys wrapped under a KEK version. The
    root key has no row: its owner, validity, times and parent stay None.
    """

    key_id: str
    version: int
    type: str
    length: int
    owner_org: str | None = None
    purpose: str
    algorithm: str
    state: str
    not_before: datetime | None = None
    not_after: datetime | None = None
    created_at: datetime | None = None
    state_changed_at: datetime | None = None
    parent_id: str | None = None
    location: str
    data_keys: int | None = None

    def to_public(self) -> dict[str, Any]:
        """JSON-ready form for `GET /v1/kms/keys` (times as ISO 8601 UTC)."""
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True)
class RotationDue:
    """A key the rotation policy says needs attention, and why.

    `reason`: "max-age" (active longer than the policy allows), "expired" (past
    `not_after`), "rewrap-pending" (a rotation started but data keys or active older
    versions remain), "compromised" (a compromised version still wraps data keys).
    """

    key_id: str
    version: int
    purpose: str
    owner_org: str | None
    algorithm: str
    active_since: datetime | None
    due_at: datetime | None
    reason: str
    pending_data_keys: int = 0


@dataclass(frozen=True)
class RotationProgress:
    """Where a rotation stands: the active version, data keys moved and left."""

    key_id: str
    version: int
    rewrapped: int
    remaining: int

    @property
    def done(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True)
class DestroyRequest:
    """A key-destruction request of the two-person rule (`crypto_destroy_requests`)."""

    id: str
    key_id: str
    version: int | None
    reason: str
    status: str
    requested_by: str
    requested_at: datetime | None
    expires_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    requested_by_person: str | None = None
    requested_by_sponsor: str | None = None
    decided_by_person: str | None = None

    @classmethod
    def from_record(
        cls, record: DestroyRequestRecord, *, now: datetime | None = None
    ) -> DestroyRequest:
        status = record.status
        expires_at = aware(record.expires_at)
        if status == _PENDING and now is not None and expires_at is not None:
            status = _EXPIRED if expires_at <= now else status
        return cls(**{**row_fields(cls, record), "status": status, "expires_at": expires_at})


def _info(row: KeyRecord, data_keys: int | None) -> KeyInfo:
    algorithm = algorithm_info(row.algorithm)
    return KeyInfo(
        **row_fields(KeyInfo, row),
        type=algorithm.kind,
        length=algorithm.bits,
        location="database (wrapped)",
        data_keys=data_keys,
    )


def _active_since(row: KeyRecord) -> datetime | None:
    return aware(row.state_changed_at) or aware(row.not_before) or aware(row.created_at)
