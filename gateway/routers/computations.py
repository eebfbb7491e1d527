"""/v1/operators and /v1/computations: request, approve or reject, follow, fetch the result.

Every route passes the enforcement point. A request is decided per input dataset
(`computation.request`, with the contract that covers it and the declared purpose and
legal basis), inside the transaction that writes the request, on the rows it writes; a
provider's approval or rejection is a `computation.approve` decision
on its own inputs. The combined decision's obligations travel into `exchange` as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import exchange
import policies
from audit.catalogue import Event
from exchange import computations as xc
from exchange import resources
from exchange.computations.signed_approvals import PartySignature
from exchange.paging import in_memory
from gateway.deprecation import deprecated
from gateway.pagination import Page, PagingDep
from gateway.pep import Deferred, Enforce, Target, path_resource
from gateway.platform import Platform
from gateway.security import CallerDep, ComputeDep

router = APIRouter(prefix="/v1", tags=["computations"])


# -- what the policy decides on ----------------------------------------------------------------


def _approval_targets(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    comp_id = request.path_params["computation_id"]
    return [Target(r) for r in resources.approval_resources(session, caller, comp_id)]


_computation_target = path_resource(resources.computation_resource, "computation_id")


def _own_computations(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    return [Target({"type": "computation", "parties": [caller.org_id]})]


ReadOperators = Enforce("operator.read")
# Decided inside the request's own transaction, on the rows it writes (exchange.computations).
RequestComputation = Enforce("computation.request", deferred=True, early_event=False)
DecideComputation = Enforce("computation.approve", resources=_approval_targets)
ReadComputation = Enforce("computation.read", resources=_computation_target)
ListComputations = Enforce("computation.read", resources=_own_computations)
ReadResult = Enforce("computation.result", resources=_computation_target)

DecisionDep = Annotated[Deferred, Depends(RequestComputation)]
ApprovalDep = Annotated[policies.Decision, Depends(DecideComputation)]


class DecisionIn(BaseModel):
    reason: str = Field(default="", max_length=500)
    query_digest: str | None = Field(
        default=None,
        max_length=80,
        description="the `query_digest` of GET /v1/computations/{id}/query the provider "
        "approves; an approval naming another query is refused (409)",
    )
    signature: PartySignature | None = Field(
        default=None,
        description="the decision signed with a key the provider's organisation registered "
        "(POST /v1/market/parties/{org}/keys): over the `query_digest` for a run, over "
        "`{id}:release:sha256:<digest of the reviewed output>` for a release, `reject:` "
        "before either for a rejection; a bad signature is 403, an unknown key 422",
    )


# -- routes ---------------------------------------------------------------------------------------


@router.get("/operators", dependencies=[Depends(ReadOperators)])
def operators(paging: PagingDep) -> Page[exchange.OperatorPublic]:
    """The vetted operators and the JSON Schema of each one's `params`, by name."""
    return paging.page(in_memory(xc.list_operators(), lambda o: (o.name,), paging.window))


@router.post("/computations", status_code=201)
def request_computation(
    body: exchange.ComputationCreate,
    request: Request,
    decision: DecisionDep,
    caller: CallerDep,
    compute: ComputeDep,
) -> exchange.ComputationPublic:
    """Ask for a computation over datasets; it runs once the policy's conditions are met.

    When the policy requires provider approval the computation waits in
    `awaiting_approval`; otherwise it is queued at once (`approved`, then `running`).
    Refused before anything is written: 429 `computation-quota-exceeded` when the
    organisation has its quota of computations running and waiting; 422
    `computation-output-too-large` / `computation-too-costly` when the operator's
    declared output or cost is above the platform's limits.
    """
    # An unknown input is refused while the policy resources are built: the denial's event.
    request.state.audit_event = f"{RequestComputation.action}.denied"

    def decide(found: Sequence[Mapping[str, Any]]) -> policies.Decision:
        targets = [Target(r, purpose=body.purpose, legal_basis=body.legal_basis) for r in found]
        allowed = decision.decide(targets)
        request.state.audit_event = Event.COMPUTATION_REQUEST_FAILED
        return allowed

    return xc.request_computation(compute, caller, body, decide=decide)


@router.get("/computations", dependencies=[Depends(ListComputations)])
def list_computations(
    caller: CallerDep, compute: ComputeDep, paging: PagingDep, state: xc.State | None = None
) -> Page[exchange.ComputationPublic]:
    """Computations the caller's organisation requested or provides to, oldest first."""
    return paging.page(xc.list_computations(compute, caller, window=paging.window, state=state))


@router.get("/computations/{computation_id}", dependencies=[Depends(ReadComputation)])
def get_computation(
    computation_id: str, caller: CallerDep, compute: ComputeDep
) -> exchange.ComputationPublic:
    """State, decisions, approvals, participants and roles, security model, ledger indexes."""
    return xc.get_computation(compute, caller, computation_id)


@dataclass(frozen=True)
class _Verdict:
    """A provider's approval or rejection of a computation, before its stage is named."""

    computation_id: str
    decision: policies.Decision
    request: Request
    caller: exchange.Caller
    compute: exchange.ComputeContext
    body: DecisionIn | None

    def give(
        self, *, approve: bool, stage: Literal["run", "release"] | None
    ) -> exchange.ComputationPublic:
        body = self.body
        self.request.state.audit_event = (
            Event.COMPUTATION_APPROVE_FAILED if approve else Event.COMPUTATION_REJECT_FAILED
        )
        self.request.state.object_id = self.computation_id
        return xc.decide(
            self.compute,
            self.caller,
            self.computation_id,
            approve=approve,
            reason=body.reason if body else "",
            decision_id=self.decision.decision_id,
            query_digest=body.query_digest if body else None,
            stage=stage,
            signature=body.signature if body else None,
        )


async def _verdict(
    computation_id: str,
    decision: ApprovalDep,
    request: Request,
    caller: CallerDep,
    compute: ComputeDep,
    body: DecisionIn | None = None,
) -> _Verdict:
    return _Verdict(computation_id, decision, request, caller, compute, body)


VerdictDep = Annotated[_Verdict, Depends(_verdict)]


@router.post("/computations/{computation_id}/approve-run")
def approve_run(v: VerdictDep) -> exchange.ComputationPublic:
    """A provider approves the run of a computation `awaiting_approval` (409 otherwise)."""
    return v.give(approve=True, stage="run")


@router.post("/computations/{computation_id}/approve-release")
def approve_release(v: VerdictDep) -> exchange.ComputationPublic:
    """A provider approves the release of a computation in `review` (409 otherwise)."""
    return v.give(approve=True, stage="release")


@router.post(
    "/computations/{computation_id}/approve",
    deprecated=True,
    dependencies=[
        Depends(
            deprecated(
                "/v1/computations/{computation_id}/approve-run",
                "/v1/computations/{computation_id}/approve-release",
            )
        )
    ],
)
def approve(v: VerdictDep) -> exchange.ComputationPublic:
    """Deprecated (0.2): use `approve-run` or `approve-release`; approves whichever is pending."""
    return v.give(approve=True, stage=None)


@router.post("/computations/{computation_id}/reject")
def reject(v: VerdictDep) -> exchange.ComputationPublic:
    """A provider rejects the run or the release; nothing runs, or nothing is released."""
    return v.give(approve=False, stage=None)


@router.get("/computations/{computation_id}/review", dependencies=[Depends(DecideComputation)])
def review(computation_id: str, caller: CallerDep, compute: ComputeDep) -> dict[str, Any]:
    """The gated output held for the providers' review (release_review obligation)."""
    return xc.review_output(compute, caller, computation_id)


@dataclass(frozen=True)
class _Output:
    """A route over a computation's output for the requester: who calls, and the compute."""

    request: Request
    caller: exchange.Caller
    compute: exchange.ComputeContext

    def failing_as(self, event: Event, computation_id: str) -> _Output:
        """From here on a failure is audited as `event` on the computation."""
        self.request.state.audit_event = event
        self.request.state.object_id = computation_id
        return self


async def _output(request: Request, caller: CallerDep, compute: ComputeDep) -> _Output:
    return _Output(request, caller, compute)


OutputDep = Annotated[_Output, Depends(_output)]


@router.get("/computations/{computation_id}/result", dependencies=[Depends(ReadResult)])
def result(computation_id: str, out: OutputDep) -> exchange.ComputationResult:
    """The released output, for the requesting organisation (the result party) only."""
    out.failing_as(Event.COMPUTATION_DELIVERY_FAILED, computation_id)
    return xc.get_result(out.compute, out.caller, computation_id)


# -- federated learning under the requester's key: the requester closes each round ---------


class FlRoundPublic(BaseModel):
    """The open step of a federated job under the requester's key (an encrypted aggregate)."""

    computation_id: str
    step: int
    posted: bool
    deadline: str
    aggregate: dict[str, Any]


class FlSealedIn(BaseModel):
    """A global model sealed by the requester's SDK for each node and itself (opaque here)."""

    model_config = {"extra": "forbid"}

    format: Literal["pdx-fl-sealed/1"]
    requester_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    nodes: list[str] = Field(min_length=1, max_length=512)
    requester: dict[str, Any]


class FlReplyIn(BaseModel):
    """The requester's reply to a step: the next global model sealed for the nodes, or stop."""

    model_config = {"extra": "forbid"}

    sealed: FlSealedIn | None = None
    stop: bool | None = None


class FlReplyPublic(BaseModel):
    computation_id: str
    step: int
    ledger_index: int | None


@router.get("/computations/{computation_id}/fl-round", dependencies=[Depends(ReadResult)])
def fl_round(computation_id: str, out: OutputDep) -> FlRoundPublic:
    """The encrypted aggregate of the open federated step, for the requester (409: none)."""
    out.failing_as(Event.COMPUTATION_DELIVERY_FAILED, computation_id)
    return FlRoundPublic(**xc.fl_current_round(out.compute, out.caller, computation_id))


@router.post("/computations/{computation_id}/fl-round/{step}", dependencies=[Depends(ReadResult)])
def fl_round_reply(
    computation_id: str, step: int, body: FlReplyIn, out: OutputDep
) -> FlReplyPublic:
    """The requester's next global model for the open step (decrypted by its SDK)."""
    out.failing_as(Event.COMPUTATION_FL_ROUND_FAILED, computation_id)
    reply = body.model_dump(exclude_none=True)
    return FlReplyPublic(**xc.fl_post_reply(out.compute, out.caller, computation_id, step, reply))


# -- a join with the requester's own cohort: the SDK answers each step --------------------------


class JoinStepPublic(BaseModel):
    """The open step of a join with the requester's own cohort (counts and opaque bytes)."""

    computation_id: str
    step: int
    posted: bool
    deadline: str
    request: dict[str, Any]


class JoinStepIn(BaseModel):
    """The SDK's reply to the open step (`pdx_client.psi`): its operation and base64 bytes."""

    model_config = {"extra": "forbid"}

    op: Literal["blind", "pairs", "return", "doubled", "stop"]
    elements: str | None = Field(default=None, max_length=1 << 20)
    final: bool | None = None
    ok: bool | None = None
    reason: str | None = Field(
        default=None, max_length=500, description="stop only: why the SDK refused the step"
    )


@router.get("/computations/{computation_id}/join-step", dependencies=[Depends(ReadResult)])
def join_step(computation_id: str, out: OutputDep) -> JoinStepPublic:
    """The open step of a join with the requester's own cohort, for the requester (409: none)."""
    out.failing_as(Event.COMPUTATION_DELIVERY_FAILED, computation_id)
    return JoinStepPublic(**xc.join_current_step(out.compute, out.caller, computation_id))


@router.post("/computations/{computation_id}/join-step/{step}", dependencies=[Depends(ReadResult)])
def join_step_reply(
    computation_id: str, step: int, body: JoinStepIn, out: OutputDep
) -> FlReplyPublic:
    """The requester's SDK's reply to the open step: blinded elements, shuffled pairs, or stop."""
    out.failing_as(Event.COMPUTATION_JOIN_STEP_FAILED, computation_id)
    reply = body.model_dump(exclude_none=True)
    return FlReplyPublic(**xc.join_post_reply(out.compute, out.caller, computation_id, step, reply))
