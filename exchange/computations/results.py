"""Reading computations and results: views, delivery, the providers' review, retention."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from exchange.accounts import Caller, Role
from exchange.computations.context import ComputeContext
from exchange.computations.schemas import ComputationPublic, ComputationResult, to_public
from exchange.computations.state import State, load, platform_subject, transition
from exchange.errors import Conflict, Forbidden, NotFound
from exchange.jobs import open_sealed
from exchange.models import Computation, ComputationInput
from exchange.paging import Slice, Window, keyset
from exchange.resources import sees_computation, sees_everything

__all__ = [
    "get_computation",
    "get_result",
    "list_computations",
    "purge_expired",
    "result_aad",
    "result_ref",
    "review_output",
    "shred_result",
]


def get_computation(ctx: ComputeContext, caller: Caller, computation_id: str) -> ComputationPublic:
    with ctx.sessions() as session:
        comp = load(session, computation_id)
        if not sees_computation(caller, comp):
            raise NotFound("no such computation", computation_id=computation_id)
        return to_public(comp)


def list_computations(
    ctx: ComputeContext,
    caller: Caller,
    *,
    window: Window,
    state: State | None = None,
) -> Slice[ComputationPublic]:
    """Computations the caller's organisation requested or provides to (all for auditors).

    Oldest first by (created_at, id), a keyset page (`exchange.paging`).
    """
    with ctx.sessions() as session:
        stmt = select(Computation).options(selectinload(Computation.inputs))
        if not sees_everything(caller):
            provided = select(ComputationInput.computation_id).where(
                ComputationInput.provider_org == caller.org_id
            )
            stmt = stmt.where(
                or_(Computation.requester_org == caller.org_id, Computation.id.in_(provided))
            )
        if state is not None:
            stmt = stmt.where(Computation.state == state.value)
        return keyset(session, stmt, (Computation.created_at, Computation.id), window, to_public)


def result_aad(comp_id: str) -> bytes:
    return f"pdx:computation-result:{comp_id}".encode()


def result_ref(comp_id: str) -> str:
    return f"computation:{comp_id}:result"


def _secret_ref(comp_id: str) -> str:
    return f"computation:{comp_id}:job-key"


def _open_result(ctx: ComputeContext, session: Session, comp: Computation) -> dict[str, Any]:
    assert comp.result_key_id is not None and comp.result_sealed is not None
    key = ctx.keystore.data_key(session, comp.result_key_id, object_ref=result_ref(comp.id))
    out: dict[str, Any] = json.loads(open_sealed(key, comp.result_sealed, result_aad(comp.id)))
    return out


def _require_reader(
    caller: Caller, comp: Computation, allowed: bool, refusal: str, role: Role, state: State,
    state_text: str,
) -> None:  # fmt: skip
    """Only `allowed` callers, holding `role`, read the output once it is in `state`.

    Others who see the computation are refused; the rest are told it does not exist.
    """
    if not allowed:
        if sees_computation(caller, comp):
            raise Forbidden(refusal)
        raise NotFound("no such computation", computation_id=comp.id)
    caller.require(role)
    if comp.state != state:
        raise Conflict(f"the computation is {comp.state}, not {state_text}", state=comp.state)


def get_result(ctx: ComputeContext, caller: Caller, computation_id: str) -> ComputationResult:
    """The released output, for the result party only; every fetch is a recorded delivery."""
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp = load(session, computation_id, lock=True)
        _require_reader(
            caller, comp, caller.org_id == comp.requester_org,
            "only the requesting organisation receives the result",
            Role.DATA_CONSUMER, State.RELEASED, "released",
        )  # fmt: skip
        if comp.result_sealed is None:
            raise NotFound("the result is past its retention and was destroyed")
        output = _open_result(ctx, session, comp)
        index = transition(
            ctx,
            session,
            comp,
            caller.subject(),
            event="result_delivered",
            action="deliver",
            now=now,
            detail=f"recipient={caller.org_id} method=api purpose={comp.purpose}"[:512],
            digest=f"sha256:{comp.result_digest}",
            expect=State.RELEASED,
        )
        return ComputationResult(
            computation_id=comp.id,
            operator=comp.operator,
            output=output,
            epsilon_spent=comp.epsilon_spent,
            digest=f"sha256:{comp.result_digest}" if comp.result_digest else "",
            ledger_index=index,
        )


def review_output(ctx: ComputeContext, caller: Caller, computation_id: str) -> dict[str, Any]:
    """The gated output held for review, shown to the inputs' providers (not a release)."""
    with ctx.sessions() as session:
        comp = load(session, computation_id)
        _require_reader(
            caller, comp, any(i.provider_org == caller.org_id for i in comp.inputs),
            "only the inputs' providers review the output",
            Role.DATA_PROVIDER, State.REVIEW, "in review",
        )  # fmt: skip
        return _open_result(ctx, session, comp)


_HOLDS_RESULT = frozenset({State.RELEASED, State.REVIEW})
"""The states in which a computation holds a sealed output."""


def purge_expired(ctx: ComputeContext) -> int:
    """Crypto-shred released outputs past their retention (the data key is deleted)."""
    now = ctx.clock()
    count = 0
    with ctx.sessions() as session, session.begin():
        rows = session.scalars(
            select(Computation).where(
                Computation.result_key_id.is_not(None),
                Computation.retain_until < now,
                Computation.state.in_(_HOLDS_RESULT),
            )
        ).all()
        for comp in rows:
            shred_result(ctx, session, comp)
            transition(
                ctx,
                session,
                comp,
                platform_subject(),
                event="result_destroyed",
                action="destroy",
                now=now,
                detail="retention ended",
                expect=_HOLDS_RESULT,
            )
            count += 1
    return count


def shred_result(ctx: ComputeContext, session: Session, comp: Computation) -> None:
    if comp.result_key_id is not None:
        ctx.keystore.delete_data_key(session, comp.result_key_id)
    comp.result_key_id = None
    comp.result_sealed = None
