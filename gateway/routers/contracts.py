"""/v1/contracts: data-use contracts an enterprise proposes and a provider signs.

A computation on general-2 data and above needs an active contract covering each
input, in force and naming the computation's purpose (the policy checks it). Every
transition is on the ledger; the response names the entry.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import exchange
from audit.catalogue import Event
from exchange import contracts as xk
from exchange import resources
from gateway.pagination import Page, PagingDep
from gateway.pep import Enforce, Resources, Target, body_before_decision
from gateway.platform import Platform
from gateway.security import CallerDep, ClockDep, SessionDep
from gateway.writes import WriteDep


def _deprecated(response: Response) -> None:
    """Contracts are superseded by market agreements (issue 17; RFC 9745, RFC 8288)."""
    response.headers["Deprecation"] = "@1796428800"  # 2026-12-05T00:00:00Z
    response.headers["Link"] = (
        '</v1/market/negotiations>; rel="successor-version", '
        '</v1/market/agreements>; rel="successor-version"'
    )


router = APIRouter(prefix="/v1/contracts", tags=["contracts"], dependencies=[Depends(_deprecated)])


_proposal_body = body_before_decision(exchange.ContractCreate, "contract_body")


def _proposal_target(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    body: exchange.ContractCreate = request.state.contract_body
    return [
        Target(
            {
                "type": "contract",
                "owner_org": caller.org_id,
                "parties": sorted({caller.org_id, body.provider_org}),
            },
            purpose=body.purpose,
        )
    ]


def _as(owner: str) -> Resources:
    def targets(
        request: Request, caller: exchange.Caller, platform: Platform, session: Session
    ) -> list[Target]:
        contract_id = request.path_params["contract_id"]
        return [Target(resources.contract_resource(session, contract_id, owner=owner))]

    return targets


def _own_contracts(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    return [Target({"type": "contract", "parties": [caller.org_id]})]


Propose = Enforce("contract.propose", resources=_proposal_target)
Sign = Enforce("contract.sign", resources=_as("provider"))
Terminate = Enforce("contract.terminate", resources=_as("consumer"))
ReadContract = Enforce("contract.read", resources=_as("consumer"))
ListContracts = Enforce("contract.read", resources=_own_contracts)


class TerminateIn(BaseModel):
    reason: str = Field(default="", max_length=500)


@router.post("", status_code=201, dependencies=[Depends(_proposal_body), Depends(Propose)])
def propose(body: exchange.ContractCreate, w: WriteDep) -> exchange.ContractPublic:
    """An enterprise proposes a purpose-bound contract over some of a provider's datasets."""
    return w.failing_as(Event.CONTRACT_PROPOSE_FAILED).run(xk.propose_contract, body)


@router.get("", dependencies=[Depends(ListContracts)])
def list_contracts(
    caller: CallerDep,
    session: SessionDep,
    now: ClockDep,
    paging: PagingDep,
    status: exchange.ContractStatus | None = None,
) -> Page[exchange.ContractPublic]:
    """The organisation's contracts, oldest proposal first."""
    return paging.page(
        xk.list_contracts(session, caller, now=now, window=paging.window, status=status)
    )


@router.get("/{contract_id}", dependencies=[Depends(ReadContract)])
def get_contract(
    contract_id: str, caller: CallerDep, session: SessionDep, now: ClockDep
) -> exchange.ContractPublic:
    return xk.get_contract(session, caller, contract_id, now=now)


@router.post("/{contract_id}/sign", dependencies=[Depends(Sign)])
def sign(contract_id: str, w: WriteDep) -> exchange.ContractPublic:
    """The provider signs: the contract becomes active."""
    w.failing_as(Event.CONTRACT_SIGN_FAILED, contract_id)
    return w.run(xk.sign_contract, contract_id)


@router.post("/{contract_id}/terminate", dependencies=[Depends(Terminate)])
def terminate(
    contract_id: str, w: WriteDep, body: TerminateIn | None = None
) -> exchange.ContractPublic:
    """Either party ends the contract; later computations under it are denied."""
    w.failing_as(Event.CONTRACT_TERMINATE_FAILED, contract_id)
    return w.run(xk.terminate_contract, contract_id, reason=body.reason if body else "")
