"""/v1/market negotiations (DSP), agreements, settlements, statements and disputes.

Thin: each route decides its policy action, opens the transaction and calls
`exchange.market`; every transition is on the ledger and the response names the entry.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

import exchange
from audit.catalogue import Event
from exchange import market, resources
from exchange.market import agreements as xagr
from exchange.market import negotiation as xneg
from exchange.market import products as xprod
from exchange.market import settlement as xset
from exchange.resources import sees_every_statement, sees_everything
from gateway.pep import Enforce, caller_owned, path_resource
from gateway.routers.market import ReadCatalog, platform_signer
from gateway.security import CallerDep, ClockDep, SessionDep
from gateway.writes import WriteDep

router = APIRouter(prefix="/v1/market", tags=["market"])

FAILED = Event.MARKET_OPERATION_FAILED
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=64)]


_negotiation = path_resource(resources.negotiation_resource, "negotiation_id")
_agreement = path_resource(resources.agreement_resource, "agreement_id")


StartNegotiation = Enforce("market.negotiate", resources=caller_owned("negotiation"))
Negotiate = Enforce("market.negotiate", resources=_negotiation)
ReadNegotiations = Enforce("market.negotiate", resources=caller_owned("negotiation"))
ReadAgreement = Enforce("market.agreement_read", resources=_agreement)
ReadAgreements = Enforce("market.agreement_read", resources=caller_owned("agreement"))
Settle = Enforce("market.settle")
ReadStatements = Enforce("market.statement_read", resources=caller_owned("statement"))
OpenDispute = Enforce("market.dispute", resources=caller_owned("dispute"))


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error):
        raise exchange.errors.InvalidInput("malformed cursor", field="cursor") from None


def _page(items: list[Any], total: int, offset: int, limit: int, path: str) -> dict[str, Any]:
    after = offset + len(items)
    token = base64.urlsafe_b64encode(str(after).encode()).decode().rstrip("=")
    return {
        "items": items,
        "total": total,
        "next": f"{path}?limit={limit}&cursor={token}" if after < total else None,
    }


class ReasonIn(BaseModel):
    reason: str = Field(default="", max_length=500)


@router.post("/negotiations", status_code=201, dependencies=[Depends(StartNegotiation)])
def start_negotiation(body: market.NegotiationCreate, w: WriteDep) -> xneg.NegotiationPublic:
    """An enterprise requests an offer (DSP ContractRequestMessage), or counters it at once."""
    return w.failing_as(FAILED).run(xneg.start_negotiation, body)


@router.get("/negotiations", dependencies=[Depends(ReadNegotiations)])
def list_negotiations(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    offset = _offset(cursor)
    items, total = xneg.list_negotiations(
        session, caller, sees_all=sees_everything(caller), limit=limit, offset=offset
    )
    return _page([i.model_dump() for i in items], total, offset, limit, "/v1/market/negotiations")


@router.get("/negotiations/{negotiation_id}", dependencies=[Depends(Negotiate)])
def get_negotiation(
    negotiation_id: str, caller: CallerDep, session: SessionDep
) -> xneg.NegotiationPublic:
    return xneg.get_negotiation(session, caller, negotiation_id, sees_all=False)


@router.post("/negotiations/{negotiation_id}/offer", dependencies=[Depends(Negotiate)])
def offer(negotiation_id: str, body: xneg.TermsIn, w: WriteDep) -> xneg.NegotiationPublic:
    """The provider offers or counter-offers terms (DSP ContractOfferMessage)."""
    return w.failing_as(FAILED, negotiation_id).run(xneg.counter_offer, negotiation_id, body.terms)


@router.post("/negotiations/{negotiation_id}/request", dependencies=[Depends(Negotiate)])
def counter(negotiation_id: str, body: xneg.TermsIn, w: WriteDep) -> xneg.NegotiationPublic:
    """The requester counters the provider's offer (DSP ContractRequestMessage)."""
    w.failing_as(FAILED, negotiation_id)
    return w.run(xneg.counter_request, negotiation_id, body.terms)


@router.post("/negotiations/{negotiation_id}/accept", dependencies=[Depends(Negotiate)])
def accept(negotiation_id: str, w: WriteDep) -> xneg.NegotiationPublic:
    """The requester accepts the offer; the agreement document and its digest are fixed."""
    return w.failing_as(FAILED, negotiation_id).run(xneg.accept, negotiation_id)


@router.post("/negotiations/{negotiation_id}/agree", dependencies=[Depends(Negotiate)])
def agree(negotiation_id: str, body: market.SignIn, w: WriteDep) -> xneg.NegotiationPublic:
    """The provider signs the agreement's digest with a key it registered (DSP AGREED)."""
    return w.failing_as(FAILED, negotiation_id).run(xneg.agree, negotiation_id, body)


@router.post("/negotiations/{negotiation_id}/verify", dependencies=[Depends(Negotiate)])
def verify(negotiation_id: str, body: market.SignIn, w: WriteDep) -> xneg.NegotiationPublic:
    """The requester signs the same digest with a key it registered (DSP VERIFIED)."""
    return w.failing_as(FAILED, negotiation_id).run(xneg.verify, negotiation_id, body)


@router.post("/negotiations/{negotiation_id}/finalize", dependencies=[Depends(Negotiate)])
def finalize(negotiation_id: str, w: WriteDep) -> xneg.NegotiationPublic:
    """The provider finalizes: the agreement is in force (DSP FINALIZED)."""
    return w.failing_as(FAILED, negotiation_id).run(xneg.finalize, negotiation_id)


@router.post("/negotiations/{negotiation_id}/terminate", dependencies=[Depends(Negotiate)])
def terminate(
    negotiation_id: str, w: WriteDep, body: ReasonIn | None = None
) -> xneg.NegotiationPublic:
    """Either party ends the negotiation before it is finalized (DSP TERMINATED)."""
    w.failing_as(FAILED, negotiation_id)
    return w.run(xneg.terminate, negotiation_id, reason=body.reason if body else "")


@router.get("/agreements", dependencies=[Depends(ReadAgreements)])
def list_agreements(
    caller: CallerDep, session: SessionDep, now: ClockDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    offset = _offset(cursor)
    items, total = xagr.list_agreements(
        session, caller, now=now, sees_all=sees_everything(caller), limit=limit, offset=offset
    )
    return _page([i.model_dump() for i in items], total, offset, limit, "/v1/market/agreements")


@router.get("/agreements/{agreement_id}", dependencies=[Depends(ReadAgreement)])
def get_agreement(
    agreement_id: str, caller: CallerDep, session: SessionDep, now: ClockDep
) -> xagr.AgreementPublic:
    return xagr.get_agreement(
        session, caller, agreement_id, now=now, sees_all=sees_everything(caller)
    )


@router.post("/settlements", status_code=201, dependencies=[Depends(Settle)])
def settle(body: market.SettlementCreate, w: WriteDep) -> dict[str, Any]:
    """Settle a period: signed statements per agreement, provider and requester."""
    w.failing_as(FAILED)
    fee_rate = w.platform.settings.market_fee_rate
    with w.session.begin():
        sign = platform_signer(w.platform, w.session)
        return xset.settle(
            w.session, w.caller, body, fee_rate=fee_rate, sign=sign, now=w.now,
            trail=w.platform.trail,
        )  # fmt: skip


@router.get("/statements", dependencies=[Depends(ReadStatements)])
def list_statements(
    caller: CallerDep,
    session: SessionDep,
    settlement_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    offset = _offset(cursor)
    items, total = xset.list_statements(
        session, caller, sees_all=sees_every_statement(caller),
        settlement_id=settlement_id, limit=limit, offset=offset,
    )  # fmt: skip
    return _page(items, total, offset, limit, "/v1/market/statements")


@router.get("/statements/{statement_id}", dependencies=[Depends(ReadStatements)])
def get_statement(statement_id: str, caller: CallerDep, session: SessionDep) -> dict[str, Any]:
    return xset.get_statement(
        session, caller, statement_id,
        sees_all=sees_every_statement(caller),
    )  # fmt: skip


@router.get("/products", dependencies=[Depends(ReadCatalog)])
def list_own_products(
    caller: CallerDep, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    """The caller's own products, drafts included, each with its pre-check result."""
    offset = _offset(cursor)
    items, total = xprod.list_own_products(session, caller, limit=limit, offset=offset)
    return _page(
        [i.model_dump(mode="json") for i in items], total, offset, limit, "/v1/market/products"
    )


@router.get("/disputes", dependencies=[Depends(ReadStatements)])
def list_disputes(
    caller: CallerDep, session: SessionDep, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """Disputes on statements the caller is party to (what each disputed line said)."""
    offset = _offset(cursor)
    items, total = xset.list_disputes(
        session, caller, sees_all=sees_every_statement(caller),
        limit=limit, offset=offset,
    )  # fmt: skip
    return _page(items, total, offset, limit, "/v1/market/disputes")


@router.post(
    "/statements/{statement_id}/disputes", status_code=201, dependencies=[Depends(OpenDispute)]
)
def open_dispute(statement_id: str, body: market.DisputeCreate, w: WriteDep) -> dict[str, Any]:
    """A party disputes one line of a statement it is party to."""
    return w.failing_as(FAILED).run(xset.open_dispute, statement_id, body)
