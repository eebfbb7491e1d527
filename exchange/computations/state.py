"""The computation state machine: states, allowed moves, and transitions as ledger entries.

    requested ─► awaiting_approval ─► approved ─► running ─► review ─► released
        │               │                           │          │
        └───────────────┴──► rejected ◄─────────────┴──────────┘    running ─► failed

Every transition names the state(s) it expects the computation to be in and is a
compare-and-set on that state (`UPDATE … WHERE state IN expected`): a late or duplicate
transition (a recovered job's first runner finishing, a second approval racing the
first) finds the row moved on, changes nothing and raises `StaleTransition`, so its
whole transaction (keys, sealed output, ledger entry) rolls back. Each transition is an
audit record and a ledger entry in the transaction that makes it (`Trail.record`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from enum import StrEnum

from sqlalchemy import update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

import audit
from exchange.computations.context import ComputeContext
from exchange.errors import NotFound, StaleTransition
from exchange.levels import max_level
from exchange.models import Computation

__all__ = [
    "NEXT",
    "PLATFORM_PARTY",
    "TERMINAL",
    "State",
    "load",
    "platform_subject",
    "transition",
]

PLATFORM_PARTY = "platform"


class State(StrEnum):
    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    REVIEW = "review"
    RELEASED = "released"
    REJECTED = "rejected"
    FAILED = "failed"


TERMINAL = frozenset({State.RELEASED, State.REJECTED, State.FAILED})

NEXT: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.AWAITING_APPROVAL, State.APPROVED}),
    State.AWAITING_APPROVAL: frozenset({State.APPROVED, State.REJECTED}),
    State.APPROVED: frozenset({State.RUNNING}),
    State.RUNNING: frozenset({State.REVIEW, State.RELEASED, State.REJECTED, State.FAILED}),
    State.REVIEW: frozenset({State.RELEASED, State.REJECTED}),
    State.RELEASED: frozenset(),
    State.REJECTED: frozenset(),
    State.FAILED: frozenset(),
}
"""The moves the machine allows; anything else is a programming error."""


def load(session: Session, computation_id: str, *, lock: bool = False) -> Computation:
    comp = session.get(
        Computation,
        computation_id,
        options=[selectinload(Computation.inputs)],
        with_for_update=lock,
    )
    if comp is None:
        raise NotFound("no such computation", computation_id=computation_id)
    return comp


def platform_subject(decision_id: str | None = None) -> audit.Subject:
    return audit.Subject(PLATFORM_PARTY, None, None, None, decision_id)


def _level(comp: Computation) -> str | None:
    return max_level(*(i.level for i in comp.inputs)).value if comp.inputs else None


def _compare_and_set(
    session: Session, comp: Computation, expect: Collection[State], state: State, now: datetime
) -> None:
    """Move the row to `state` only if it is still in one of `expect` (else StaleTransition)."""
    for old in expect:
        if state not in NEXT[old]:
            raise ValueError(f"no transition {old.value} → {state.value}")
    moved = session.execute(
        update(Computation)
        .where(Computation.id == comp.id, Computation.state.in_([s.value for s in expect]))
        .values(state=state.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        raise StaleTransition(
            f"the computation is no longer {' or '.join(s.value for s in expect)}",
            computation_id=comp.id,
        )
    set_committed_value(comp, "state", state.value)  # type: ignore[no-untyped-call]


def transition(
    ctx: ComputeContext,
    session: Session,
    comp: Computation,
    subject: audit.Subject,
    *,
    event: str,
    action: str,
    now: datetime,
    expect: State | Collection[State],
    state: State | None = None,
    detail: str | None = None,
    digest: str | None = None,
) -> int | None:
    """Record `event` on a computation expected in `expect`, moving it to `state` if given.

    Writes the audit record, the ledger entry and the computation's history in the
    caller's transaction; raises `StaleTransition` (nothing written) when the row is no
    longer in an expected state.
    """
    expected = frozenset({expect} if isinstance(expect, State) else expect)
    if state is not None:
        _compare_and_set(session, comp, expected, state, now)
    elif State(comp.state) not in expected:
        raise StaleTransition(
            f"the computation is {comp.state}, not {' or '.join(s.value for s in expected)}",
            computation_id=comp.id,
        )
    comp.updated_at = now
    receipt = ctx.trail.record(
        session,
        subject,
        audit.AuditEvent(
            f"computation.{event}",
            action,
            audit.Result.SUCCESS,
            object_id=comp.id,
            purpose=comp.purpose,
            data_level=_level(comp),
            detail=(detail or "")[:512] or None,
        ),
        object_type="computation",
        payload_digest=digest,
        now=now,
        # Requester and providers each find the job's entries in their own trail.
        parties=[comp.requester_org, *(i.provider_org for i in comp.inputs)],
    )
    comp.transitions = [
        *comp.transitions,
        {
            "state": comp.state,
            "event": event,
            "at": now.isoformat(),
            "by": subject.subject_id or PLATFORM_PARTY,
            "ledger_index": receipt.ledger_index,
            "detail": detail,
        },
    ]
    return receipt.ledger_index
