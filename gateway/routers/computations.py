"""/v1/operators and /v1/computations: request, approve or reject, follow, fetch the result.

Every route passes the enforcement point. A request is decided per input dataset
(`computation.request`, with the contract that covers it and the declared purpose and
legal basis); a provider's approval or rejection is a `computation.approve` decision
on its own inputs. The combined decision's obligations travel into `exchange` as data.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import exchange
import policies
from audit.catalogue import Event
from exchange import computations as xc
from exchange import errors as xe
from exchange.models import Computation
from gateway.pep import Enforce, Target, body_before_decision
from gateway.platform import Platform
from gateway.security import CallerDep, PlatformDep

router = APIRouter(prefix="/v1", tags=["computations"])


async def _context(platform: PlatformDep) -> exchange.ComputeContext:
    return platform.compute


ComputeDep = Annotated[exchange.ComputeContext, Depends(_context)]


# -- what the policy decides on ----------------------------------------------------------------


_request_body = body_before_decision(exchange.ComputationCreate, "computation_body")


def _request_targets(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    body: exchange.ComputationCreate = request.state.computation_body
    resources = xc.request_resources(
        session,
        caller,
        inputs=body.inputs,
        purpose=body.purpose,
        contract_id=body.contract_id,
        now=platform.now(),
    )
    return [Target(r, purpose=body.purpose, legal_basis=body.legal_basis) for r in resources]


def _approval_targets(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    comp_id = request.path_params["computation_id"]
    return [Target(r) for r in xc.approval_resources(session, caller, comp_id)]


def _computation(session: Session, computation_id: str) -> dict[str, Any]:
    comp = session.get(Computation, computation_id)
    if comp is None:
        raise xe.NotFound("no such computation", computation_id=computation_id)
    parties = [comp.requester_org, *(i.provider_org for i in comp.inputs)]
    return {
        "type": "computation",
        "id": comp.id,
        "owner_org": comp.requester_org,
        "parties": sorted(set(parties)),
    }


def _computation_target(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    return [Target(_computation(session, request.path_params["computation_id"]))]


def _own_computations(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    return [Target({"type": "computation", "parties": [caller.org_id]})]


ReadOperators = Enforce("operator.read")
RequestComputation = Enforce("computation.request", resources=_request_targets)
DecideComputation = Enforce("computation.approve", resources=_approval_targets)
ReadComputation = Enforce("computation.read", resources=_computation_target)
ListComputations = Enforce("computation.read", resources=_own_computations)
ReadResult = Enforce("computation.result", resources=_computation_target)

DecisionDep = Annotated[policies.Decision, Depends(RequestComputation)]
ApprovalDep = Annotated[policies.Decision, Depends(DecideComputation)]


class DecisionIn(BaseModel):
    reason: str = Field(default="", max_length=500)


# -- routes ---------------------------------------------------------------------------------------


@router.get(
    "/operators",
    response_model=list[exchange.OperatorPublic],
    dependencies=[Depends(ReadOperators)],
)
def operators() -> list[exchange.OperatorPublic]:
    """The vetted operators and the JSON Schema of each one's `params`."""
    return xc.list_operators()


@router.post(
    "/computations",
    status_code=201,
    response_model=exchange.ComputationPublic,
    dependencies=[Depends(_request_body)],
)
def request_computation(
    body: exchange.ComputationCreate,
    request: Request,
    decision: DecisionDep,
    caller: CallerDep,
    compute: ComputeDep,
) -> exchange.ComputationPublic:
    """Ask for a computation over datasets; it runs once the policy's conditions are met.

    When the policy requires provider approval the computation waits in
    `awaiting-approval`; otherwise it is queued at once (`approved`, then `running`).
    Refused before anything is written: 429 `computation-quota-exceeded` when the
    organisation has its quota of computations running and waiting; 422
    `computation-output-too-large` / `computation-too-costly` when the operator's
    declared output or cost is above the platform's limits.
    """
    request.state.audit_event = Event.COMPUTATION_REQUEST_FAILED
    return xc.request_computation(
        compute,
        caller,
        body,
        obligations=dict(decision.obligations),
        decision_id=decision.decision_id,
    )


@router.get(
    "/computations",
    response_model=list[exchange.ComputationPublic],
    dependencies=[Depends(ListComputations)],
)
def list_computations(
    caller: CallerDep,
    compute: ComputeDep,
    state: xc.State | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[exchange.ComputationPublic]:
    return xc.list_computations(compute, caller, state=state, limit=limit, offset=offset)


@router.get(
    "/computations/{computation_id}",
    response_model=exchange.ComputationPublic,
    dependencies=[Depends(ReadComputation)],
)
def get_computation(
    computation_id: str, caller: CallerDep, compute: ComputeDep
) -> exchange.ComputationPublic:
    """State, decisions, approvals, participants and roles, security model, ledger indexes."""
    return xc.get_computation(compute, caller, computation_id)


@router.post("/computations/{computation_id}/approve", response_model=exchange.ComputationPublic)
def approve(
    computation_id: str,
    decision: ApprovalDep,
    request: Request,
    caller: CallerDep,
    compute: ComputeDep,
    body: DecisionIn | None = None,
) -> exchange.ComputationPublic:
    """A provider approves the run (awaiting-approval) or the release (review)."""
    request.state.audit_event = Event.COMPUTATION_APPROVE_FAILED
    request.state.object_id = computation_id
    return xc.decide(
        compute,
        caller,
        computation_id,
        approve=True,
        reason=body.reason if body else "",
        decision_id=decision.decision_id,
    )


@router.post("/computations/{computation_id}/reject", response_model=exchange.ComputationPublic)
def reject(
    computation_id: str,
    decision: ApprovalDep,
    request: Request,
    caller: CallerDep,
    compute: ComputeDep,
    body: DecisionIn | None = None,
) -> exchange.ComputationPublic:
    """A provider rejects the run or the release; nothing runs, or nothing is released."""
    request.state.audit_event = Event.COMPUTATION_REJECT_FAILED
    request.state.object_id = computation_id
    return xc.decide(
        compute,
        caller,
        computation_id,
        approve=False,
        reason=body.reason if body else "",
        decision_id=decision.decision_id,
    )


@router.get("/computations/{computation_id}/review", dependencies=[Depends(DecideComputation)])
def review(computation_id: str, caller: CallerDep, compute: ComputeDep) -> dict[str, Any]:
    """The gated output held for the providers' review (release_review obligation)."""
    return xc.review_output(compute, caller, computation_id)


@router.get(
    "/computations/{computation_id}/result",
    response_model=exchange.ComputationResult,
    dependencies=[Depends(ReadResult)],
)
def result(
    computation_id: str, request: Request, caller: CallerDep, compute: ComputeDep
) -> exchange.ComputationResult:
    """The released output, for the requesting organisation (the result party) only."""
    request.state.audit_event = Event.COMPUTATION_DELIVERY_FAILED
    request.state.object_id = computation_id
    return xc.get_result(compute, caller, computation_id)
