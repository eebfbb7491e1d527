"""Join keys: the identifier columns a provider declares joinable, and the kind of each.

A private join (`psi.*`, `stats.*` with `join`) may use a column as its key only if the
dataset's provider declared it here: an identifier column is personal information, and
whether it may be matched against another organisation's data is the provider's call,
not the requester's. A declaration replaces the previous one and is recorded (audit and
ledger, `dataset.join_keys_declared`) in the transaction that writes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

import audit
from exchange.accounts import Caller, Role
from exchange.errors import Forbidden, InvalidInput
from exchange.models import DatasetJoinKey, load_dataset
from exchange.trail import Trail
from sandbox.identifiers import IdKind

__all__ = ["JoinKey", "JoinKeys", "declare_join_keys", "declared_kind", "join_keys"]


class JoinKey(BaseModel):
    """One joinable column and the kind of identifier it holds."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(min_length=1, max_length=200)
    kind: IdKind


class JoinKeys(BaseModel):
    """A dataset's joinable columns (the whole set: a declaration replaces the last)."""

    model_config = ConfigDict(extra="forbid")

    keys: list[JoinKey] = Field(default_factory=list, max_length=16)
    ledger_index: int | None = None


def join_keys(session: Session, dataset_id: str) -> list[JoinKey]:
    rows = session.scalars(
        select(DatasetJoinKey)
        .where(DatasetJoinKey.dataset_id == dataset_id)
        .order_by(DatasetJoinKey.column)
    )
    return [JoinKey(column=r.column, kind=IdKind(r.kind)) for r in rows]


def declared_kind(session: Session, dataset_id: str, column: str) -> IdKind | None:
    """The kind the provider declared for `column`, or None if it is not joinable."""
    row = session.get(DatasetJoinKey, (dataset_id, column))
    return IdKind(row.kind) if row is not None else None


def declare_join_keys(
    session: Session,
    caller: Caller,
    dataset_id: str,
    keys: Sequence[JoinKey],
    *,
    now: datetime,
    trail: Trail,
) -> JoinKeys:
    """Replace the dataset's joinable columns (its provider only; columns must exist)."""
    ds = load_dataset(session, dataset_id)
    caller.require(Role.DATA_PROVIDER)
    if ds.owner_org != caller.org_id:
        raise Forbidden("only the dataset's provider declares its join keys")
    names = {f.name for f in ds.fields}
    columns = [k.column for k in keys]
    if len(set(columns)) != len(columns):
        raise InvalidInput("a column is declared once", field="keys")
    missing = [c for c in columns if c not in names]
    if missing:
        raise InvalidInput(
            f"dataset {ds.id} has no column named {', '.join(missing)}", field="keys"
        )
    session.execute(delete(DatasetJoinKey).where(DatasetJoinKey.dataset_id == ds.id))
    for k in keys:
        session.add(
            DatasetJoinKey(
                dataset_id=ds.id,
                column=k.column,
                kind=k.kind.value,
                declared_by=caller.client_id,
                declared_at=now,
            )
        )
    body = [
        {"column": k.column, "kind": k.kind.value} for k in sorted(keys, key=lambda k: k.column)
    ]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    receipt = trail.record(
        session,
        caller.subject(),
        audit.AuditEvent(
            audit.Event.DATASET_JOIN_KEYS_DECLARED,
            "declare_join_keys",
            audit.Result.SUCCESS,
            object_id=ds.id,
            detail=f"keys={len(body)}",
        ),
        object_type="dataset",
        now=now,
        payload_digest=f"sha256:{digest}",
    )
    return JoinKeys(keys=list(keys), ledger_index=receipt.ledger_index)
