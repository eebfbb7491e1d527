"""Provider approvals: of the run (awaiting_approval) and of the release (review).

* `awaiting_approval` (obligation `require_provider_approval`): each input's provider
  approves or rejects (`computation.approve` decisions). No operator code runs before
  every approval is in: the job is handed to the runner only on entering `approved`.
* `review` (obligation `release_review`): the gated output is held until each provider
  approves it; a refusal rejects the computation and crypto-shreds the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Literal

from sqlalchemy.orm import Session

import audit
from exchange.accounts import Caller, Role
from exchange.approval_binding import record_approval
from exchange.commitments import commitment_of
from exchange.computations.context import ComputeContext
from exchange.computations.job_keys import job_key_binding
from exchange.computations.results import shred_result
from exchange.computations.runs import submit
from exchange.computations.schemas import ComputationPublic, to_public
from exchange.computations.signed_approvals import PartySignature, verify_decision
from exchange.computations.state import State, load, transition
from exchange.errors import Conflict, Forbidden, NotFound
from exchange.models import Computation, ComputationInput
from exchange.resources import sees_computation

__all__ = ["decide"]


def decide(
    ctx: ComputeContext,
    caller: Caller,
    computation_id: str,
    *,
    approve: bool,
    reason: str = "",
    decision_id: str | None,
    query_digest: str | None = None,
    stage: Literal["run", "release"] | None = None,
    signature: PartySignature | None = None,
) -> ComputationPublic:
    """A provider approves or rejects: the run (awaiting_approval) or the release (review).

    Approving the run records the query the provider approves (`exchange.approval_binding`);
    with `query_digest`, an approval naming another query is refused. `stage` names which
    of the two decisions the caller means (`approve-run`, `approve-release`); a
    computation awaiting the other one is a 409 and changes nothing. None (the deprecated
    `/approve` and `/reject`) decides whichever is pending. With `signature` the decision
    is signed by the provider's own key (`exchange.computations.signed_approvals`):
    verified, kept in the decision, its digest written into the provider's ledger entry.
    """
    caller.require(Role.DATA_PROVIDER)
    now = ctx.clock()
    with ctx.sessions() as session, session.begin():
        comp = load(session, computation_id, lock=True)
        mine = [i for i in comp.inputs if i.provider_org == caller.org_id]
        if not mine:
            if not sees_computation(caller, comp):
                raise NotFound("no such computation", computation_id=computation_id)
            raise Forbidden("only a provider of this computation's inputs decides on it")
        state = State(comp.state)
        pending = {State.AWAITING_APPROVAL: "run", State.REVIEW: "release"}.get(state)
        if stage is not None and pending != stage:
            raise Conflict(
                f"the computation is {state.value}: no {stage} decision is awaited",
                state=state.value,
            )
        subject = caller.subject()
        which: Literal["run", "release"] = "release" if state is State.REVIEW else "run"
        if state is State.AWAITING_APPROVAL and approve:
            record_approval(
                session,
                comp,
                provider_org=caller.org_id,
                approved_by=caller.client_id,
                presented=query_digest,
                now=now,
            )
        signed = None
        if signature is not None and pending is not None:
            signed = verify_decision(
                session, comp, org_id=caller.org_id, stage=which, approve=approve,
                signature=signature,
            )  # fmt: skip
        comp.decisions = [
            *comp.decisions,
            {
                "action": "computation.approve",
                "decision_id": decision_id,
                "by": caller.client_id,
                "org": caller.org_id,
                "approve": approve,
                "stage": which,
                **job_key_binding(session, comp.id),
                **({"signature": signed} if signed is not None else {}),
            },
        ]
        sig = signed["digest"] if signed is not None else None
        if state is State.AWAITING_APPROVAL:
            index = _decide_stage(
                _RUN, ctx, session, comp, mine, caller, subject, approve, reason, now, sig
            )
        elif state is State.REVIEW:
            index = _decide_stage(
                _RELEASE, ctx, session, comp, mine, caller, subject, approve, reason, now, sig
            )
        else:
            raise Conflict(
                f"the computation is {state.value}: nothing to approve", state=state.value
            )
        public = to_public(comp, ledger_index=index)
    if public.state == State.APPROVED:
        submit(ctx, computation_id, public.requester_org)
    return public


@dataclass(frozen=True)
class _Stage:
    """One of the two provider decisions on a computation: to run it, or to release it."""

    prefix: str  # ComputationInput column prefix: "" (run) or "release_" (release)
    already: str
    refused: str
    approved_event: str
    approved: str
    done_event: str
    done_action: str
    done_state: State
    done_detail: str
    shred_on_reject: bool
    pending_state: State  # the state in which this decision is awaited


_RUN = _Stage(
    prefix="",
    already="this provider has already decided on this computation",
    refused="rejected the run",
    approved_event="provider_approved",
    approved="approved the run",
    done_event="approved",
    done_action="approve",
    done_state=State.APPROVED,
    done_detail="every provider approved",
    shred_on_reject=False,
    pending_state=State.AWAITING_APPROVAL,
)
_RELEASE = _Stage(
    prefix="release_",
    already="this provider has already reviewed this output",
    refused="refused the release",
    approved_event="release_approved",
    approved="approved the release",
    done_event="released",
    done_action="release",
    done_state=State.RELEASED,
    done_detail="every provider reviewed the output",
    shred_on_reject=True,
    pending_state=State.REVIEW,
)


def _decide_stage(
    stage: _Stage,
    ctx: ComputeContext,
    session: Session,
    comp: Computation,
    mine: Sequence[ComputationInput],
    caller: Caller,
    subject: audit.Subject,
    approve: bool,
    reason: str,
    now: datetime,
    signature_digest: str | None = None,
) -> int | None:
    """Record this provider's decision; reject the job, or advance it once all agreed.

    A signed decision's entry names the signature record's digest (detail and payload).
    """
    signed = f" signature={signature_digest}" if signature_digest else ""
    approval = f"{stage.prefix}approval"
    if any(getattr(i, approval) != "pending" for i in mine):
        raise Conflict(stage.already)
    for i in mine:
        setattr(i, approval, "approved" if approve else "rejected")
        setattr(i, f"{stage.prefix}approved_by", caller.client_id)
        setattr(i, f"{stage.prefix}approved_at", now)
    move = partial(transition, ctx, session, comp, subject, now=now, expect=stage.pending_state)
    if not approve:
        if stage.shred_on_reject:
            shred_result(ctx, session, comp)
        return move(
            event="rejected",
            action="reject",
            state=State.REJECTED,
            detail=f"provider {caller.org_id} {stage.refused}{signed}: {reason}"[:512],
            digest=signature_digest,
        )
    index = move(
        event=stage.approved_event,
        action="approve",
        detail=f"provider {caller.org_id} {stage.approved}{signed}",
        digest=signature_digest,
    )
    if all(getattr(i, approval) == "approved" for i in comp.inputs):
        index = move(
            event=stage.done_event,
            action=stage.done_action,
            state=stage.done_state,
            detail=stage.done_detail,
            digest=commitment_of(session, comp.id, "result") if stage is _RELEASE else None,
        )
    return index
