"""Shared helpers of the market: timestamps, canonical digests, recording a transition."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import BeforeValidator
from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import UnaryExpression

import audit
from exchange.accounts import Caller
from exchange.timestamps import aware
from exchange.trail import Receipt, Trail
from ledger import canonical_json

__all__ = ["Indexed", "ZTime", "aware", "digest_of", "offset_page", "record", "z"]


R = TypeVar("R")


def z(value: datetime | None) -> str | None:
    """RFC 3339 UTC with `Z` (shared-contracts.md)."""
    if value is None:
        return None
    return aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _z_of_datetime(value: object) -> object:
    return z(value) if isinstance(value, datetime) else value


ZTime = Annotated[str, BeforeValidator(_z_of_datetime)]
"""A market view's time: a stored datetime reads as `z(value)`, the text the API shows."""


def digest_of(document: Any) -> str:
    """`sha256:<hex>` of the document's canonical JSON (RFC 8785)."""
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


class Indexed(Protocol):
    """A market row that keeps the ledger index of the entry that created or changed it."""

    ledger_index: int | None


def record(
    session: Session,
    trail: Trail,
    caller: Caller | audit.Subject,
    event: audit.Event,
    action: str,
    *,
    object_type: str,
    object_id: str,
    now: datetime,
    detail: str | None = None,
    purpose: str | None = None,
    digest: str | None = None,
    row: Indexed | None = None,
) -> Receipt:
    """One market transition: its audit record and ledger entry, in the caller's transaction.

    With `row`, the row is flushed first and keeps the entry's ledger index.
    """
    subject = caller if isinstance(caller, audit.Subject) else caller.subject()
    if row is not None:
        session.flush()
    receipt = trail.record(
        session,
        subject,
        audit.AuditEvent(
            event,
            action,
            audit.Result.SUCCESS,
            object_id=object_id,
            purpose=purpose,
            detail=detail[:512] if detail else None,
        ),
        object_type=object_type,
        now=now,
        payload_digest=digest,
    )
    if row is not None:
        row.ledger_index = receipt.ledger_index
    return receipt


def offset_page(
    session: Session,
    stmt: Select[tuple[R]],
    order: tuple[InstrumentedAttribute[Any] | UnaryExpression[Any], ...],
    *,
    limit: int,
    offset: int,
) -> tuple[list[R], int]:
    """One page of the query's rows in `order` (`limit` from `offset`) and its total."""
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(session.scalars(stmt.order_by(*order).limit(limit).offset(offset))), total
