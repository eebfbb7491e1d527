"""The DSP contract negotiation between an enterprise (consumer) and a provider.

States as the Dataspace Protocol names them: REQUESTED → OFFERED ⇄ REQUESTED (offers and
counter-offers) → ACCEPTED (the consumer accepts the provider's offer; the agreement
document is fixed) → AGREED (the provider signs it) → VERIFIED (the consumer signs it) →
FINALIZED (the agreement is in force), or TERMINATED by either party before that.
Requirements (purpose, DUA reference, legal basis) and both parties' verified identities
are checked when the negotiation starts and again when the parties sign; both sign the
document's digest with keys they hold, the platform verifies with their public keys.
Every transition is an audit record and a ledger entry in the transaction that makes it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.catalogue import Event
from exchange.accounts import Caller, OrgKind, Role
from exchange.errors import Conflict, Forbidden, InvalidInput, NotFound
from exchange.jobs import DEFAULT_EPSILON_BUDGET
from exchange.market._common import ZTime, digest_of, offset_page, record, z
from exchange.market.agreements import FINALIZED, agreement_public
from exchange.market.models import Agreement, Negotiation, Offer, Product
from exchange.market.odrl import Delivery, Terms, odrl_policy
from exchange.market.parties import check_signature, require_verified
from exchange.models import Dataset, PrivacyBudgetAccount
from exchange.party_rows import party_row, party_rows
from exchange.trail import Trail
from exchange.views import row_values

__all__ = [
    "NegotiationCreate",
    "NegotiationPublic",
    "NegotiationState",
    "SignIn",
    "TermsIn",
    "accept",
    "agree",
    "counter_offer",
    "counter_request",
    "finalize",
    "get_negotiation",
    "list_negotiations",
    "start_negotiation",
    "terminate",
    "verify",
]


class NegotiationState(StrEnum):
    REQUESTED = "requested"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    AGREED = "agreed"
    VERIFIED = "verified"
    FINALIZED = "finalized"
    TERMINATED = "terminated"


_EVENTS = {
    NegotiationState.REQUESTED: Event.MARKET_NEGOTIATION_REQUESTED,
    NegotiationState.OFFERED: Event.MARKET_NEGOTIATION_OFFERED,
    NegotiationState.ACCEPTED: Event.MARKET_NEGOTIATION_ACCEPTED,
    NegotiationState.AGREED: Event.MARKET_NEGOTIATION_AGREED,
    NegotiationState.VERIFIED: Event.MARKET_NEGOTIATION_VERIFIED,
    NegotiationState.FINALIZED: Event.MARKET_NEGOTIATION_FINALIZED,
    NegotiationState.TERMINATED: Event.MARKET_NEGOTIATION_TERMINATED,
}
_DONE = (NegotiationState.FINALIZED, NegotiationState.TERMINATED)


class NegotiationCreate(BaseModel):
    """An enterprise asks for an offer (as published, or with its own counter terms)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    offer_id: str = Field(min_length=1, max_length=36)
    purpose: str = Field(min_length=3, max_length=500)
    dua_reference: str | None = Field(
        default=None, max_length=128, description="the external data-use agreement it cites"
    )
    legal_basis: str | None = Field(
        default=None, max_length=200, description="consent:<id> or statute:<ref> (PI data)"
    )
    terms: Terms | None = Field(default=None, description="a counter-offer; default: the offer's")


class TermsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terms: Terms


class SignIn(BaseModel):
    """A party's signature over the agreement's digest, with the key it registered."""

    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(min_length=1, max_length=80)
    signature: str = Field(min_length=1, max_length=200, description="base64")


class NegotiationPublic(BaseModel):
    id: str
    state: NegotiationState
    product_id: str
    offer_id: str
    requester_org: str
    provider_org: str
    terms: dict[str, Any]
    requirements: dict[str, Any]
    agreement_document: dict[str, Any] | None
    agreement_digest: str | None = Field(description="what each party signs (UTF-8 of this)")
    signatures: dict[str, Any]
    transitions: list[dict[str, Any]]
    agreement_id: str | None
    created_at: ZTime
    updated_at: ZTime
    ledger_index: int | None = None


def _public(n: Negotiation, ledger_index: int | None = None) -> NegotiationPublic:
    return NegotiationPublic.model_validate(
        {
            **row_values(NegotiationPublic, n),
            "requester_org": n.consumer_org,
            "agreement_document": n.draft,
            "agreement_digest": n.draft_digest,
            "ledger_index": ledger_index,
        }
    )


def _transition(
    session: Session,
    trail: Trail,
    caller: Caller,
    n: Negotiation,
    state: NegotiationState,
    action: str,
    now: datetime,
    detail: str = "",
) -> int | None:
    n.state = state.value
    n.updated_at = now
    receipt = record(
        session, trail, caller, _EVENTS[state], action,
        object_type="negotiation", object_id=n.id, now=now,
        purpose=n.requirements.get("purpose"), digest=n.draft_digest,
        detail=f"requester={n.consumer_org} provider={n.provider_org} {detail}".strip(),
    )  # fmt: skip
    n.transitions = [
        *n.transitions,
        {"state": state.value, "at": z(now), "by": caller.client_id,
         "ledger_index": receipt.ledger_index},
    ]  # fmt: skip
    return receipt.ledger_index


def _datasets(session: Session, ids: list[str]) -> list[Dataset]:
    return list(session.scalars(select(Dataset).where(Dataset.id.in_(ids))))


def _check_requirements(
    session: Session, product: Product, offer_terms: dict[str, Any], terms: Terms,
    requirements: dict[str, Any],
) -> None:  # fmt: skip
    """Purpose, DUA reference, legal basis and delivery: refused now, not at compute time."""
    if terms.delivery.value != offer_terms["delivery"]:
        raise InvalidInput(
            "a counter-offer keeps the offer's delivery mode", field="terms.delivery"
        )
    if terms.delivery is Delivery.DOWNLOAD and "download" not in product.delivery_modes:
        raise Forbidden("this product is not offered for download")
    purpose = requirements["purpose"]
    if purpose not in terms.purposes:
        raise InvalidInput(
            f"purpose '{purpose}' is not one the terms permit ({'; '.join(terms.purposes)})",
            field="purpose",
        )
    datasets = _datasets(session, product.datasets)
    if any(d.open_attribute != "open" for d in datasets) and not requirements["dua_reference"]:
        raise InvalidInput(
            "data that is not open needs a data-use agreement reference (dua_reference)",
            field="dua_reference",
        )
    basis = requirements["legal_basis"] or ""
    if any(d.pi for d in datasets) and not basis.startswith(("consent:", "statute:")):
        raise InvalidInput(
            "personal information needs a legal basis: consent:<id> or statute:<ref>",
            field="legal_basis",
        )


def _check_epsilon_shares(session: Session, datasets: list[str], share: float | None) -> None:
    """The ε shares of agreements in force on a dataset never sum above its budget."""
    if not share:
        return
    for dataset_id in datasets:
        account = session.get(PrivacyBudgetAccount, dataset_id)
        limit = account.epsilon_limit if account else DEFAULT_EPSILON_BUDGET
        taken = 0.0
        for a in session.scalars(select(Agreement).where(Agreement.state == FINALIZED)):
            if dataset_id in a.datasets:
                taken += float(a.terms.get("epsilon_share") or 0)
        if taken + share > limit + 1e-12:
            raise Conflict(
                f"the ε shares on dataset {dataset_id} would reach {taken + share:g}, "
                f"above its budget of {limit:g}",
                dataset_id=dataset_id,
            )


def start_negotiation(
    session: Session, caller: Caller, body: NegotiationCreate, *, now: datetime, trail: Trail
) -> NegotiationPublic:
    """An enterprise requests an offer of a listed product (DSP ContractRequestMessage)."""
    caller.require_as(
        Role.DATA_CONSUMER, OrgKind.ENTERPRISE, "only an enterprise negotiates for data"
    )
    offer = session.get(Offer, body.offer_id)
    product = session.get(Product, offer.product_id) if offer else None
    if offer is None or product is None or product.state != "listed":
        raise NotFound("no such offer of a listed product", offer_id=body.offer_id)
    require_verified(session, caller.org_id, product.provider_org)
    terms = body.terms or Terms.model_validate(offer.terms)
    requirements = {
        "purpose": body.purpose,
        "dua_reference": body.dua_reference or None,
        "legal_basis": body.legal_basis or None,
    }
    _check_requirements(session, product, offer.terms, terms, requirements)
    _check_epsilon_shares(session, product.datasets, terms.epsilon_share)
    n = Negotiation(
        id=str(uuid.uuid4()),
        product_id=product.id,
        offer_id=offer.id,
        consumer_org=caller.org_id,
        provider_org=product.provider_org,
        state=NegotiationState.REQUESTED.value,
        terms=terms.model_dump(mode="json"),
        requirements=requirements,
        draft=None,
        draft_digest=None,
        signatures={},
        transitions=[],
        agreement_id=None,
        created_at=now,
        updated_at=now,
    )
    session.add(n)
    session.flush()
    index = _transition(session, trail, caller, n, NegotiationState.REQUESTED, "request", now,
                        "counter-offer" if body.terms else "")  # fmt: skip
    return _public(n, index)


def _load(session: Session, caller: Caller, negotiation_id: str) -> tuple[Negotiation, str]:
    """The negotiation, locked, and the caller's side: "consumer" or "provider"."""
    n = session.get(Negotiation, negotiation_id, with_for_update=True)
    if n is None or caller.org_id not in (n.consumer_org, n.provider_org):
        raise NotFound("no such negotiation", negotiation_id=negotiation_id)
    side = "consumer" if caller.org_id == n.consumer_org else "provider"
    needed = Role.DATA_CONSUMER if side == "consumer" else Role.DATA_PROVIDER
    caller.require(needed)
    return n, side


@dataclass(frozen=True)
class _Move:
    """One of the parties' moves: who makes it, from which state, to which, and its name."""

    side: str
    expect: NegotiationState
    state: NegotiationState
    action: str
    doing: str


_OFFER = _Move("provider", NegotiationState.REQUESTED, NegotiationState.OFFERED, "offer", "offers")
_COUNTER = _Move(
    "consumer", NegotiationState.OFFERED, NegotiationState.REQUESTED, "counter",
    "counters an offer",
)  # fmt: skip
_ACCEPT = _Move(
    "consumer", NegotiationState.OFFERED, NegotiationState.ACCEPTED, "accept", "accepts"
)
_AGREE = _Move("provider", NegotiationState.ACCEPTED, NegotiationState.AGREED, "agree", "agrees")
_VERIFY = _Move(
    "consumer", NegotiationState.AGREED, NegotiationState.VERIFIED, "verify", "verifies"
)
_FINALIZE = _Move(
    "provider", NegotiationState.VERIFIED, NegotiationState.FINALIZED, "finalize", "finalizes"
)


def _step(session: Session, caller: Caller, negotiation_id: str, move: _Move) -> Negotiation:
    """The negotiation, locked, once the caller is on the move's side and it is in its state."""
    n, side = _load(session, caller, negotiation_id)
    if side != move.side:
        raise Forbidden(f"the {move.side} {move.doing}, not the {side}")
    if n.state != move.expect:
        raise Conflict(
            f"the negotiation is {n.state}; {move.doing} needs {move.expect.value}",
            negotiation_state=n.state,
        )
    return n


def _moved(
    session: Session, trail: Trail, caller: Caller, n: Negotiation, move: _Move, now: datetime
) -> NegotiationPublic:
    """The negotiation after the move (recorded in this transaction)."""
    return _public(n, _transition(session, trail, caller, n, move.state, move.action, now))


def _counter(
    session: Session, caller: Caller, negotiation_id: str, terms: Terms, move: _Move, *,
    now: datetime, trail: Trail,
) -> NegotiationPublic:  # fmt: skip
    """New terms, checked against the offer and the requirements."""
    n = _step(session, caller, negotiation_id, move)
    product = session.get(Product, n.product_id)
    offer = session.get(Offer, n.offer_id)
    assert product is not None and offer is not None
    _check_requirements(session, product, offer.terms, terms, n.requirements)
    n.terms = terms.model_dump(mode="json")
    return _moved(session, trail, caller, n, move, now)


# The provider offers (or counter-offers) terms (DSP ContractOfferMessage); the consumer
# answers an offer with a counter-offer (DSP ContractRequestMessage).
counter_offer = partial(_counter, move=_OFFER)
counter_request = partial(_counter, move=_COUNTER)


def _draft(session: Session, n: Negotiation, now: datetime) -> dict[str, Any]:
    """The agreement document both parties sign: the ODRL agreement plus pdx's facts."""
    terms = Terms.model_validate(n.terms)
    product = session.get(Product, n.product_id)
    assert product is not None
    agreement_id = str(uuid.uuid4())
    policy = odrl_policy(
        terms,
        policy_type="odrl:Agreement",
        uid=f"urn:uuid:{agreement_id}",
        target=f"urn:uuid:{product.id}",
        assigner=f"urn:uuid:{n.provider_org}",
        assignee=f"urn:uuid:{n.consumer_org}",
    )
    return {
        **policy,
        "dspace:timestamp": z(now),
        "pdx:negotiation": n.id,
        "pdx:datasets": list(product.datasets),
        "pdx:purpose": n.requirements["purpose"],
        "pdx:duaReference": n.requirements["dua_reference"],
        "pdx:legalBasis": n.requirements["legal_basis"],
        "pdx:rightsGranted": list(product.rights.get("granted", [])),
        "pdx:notBefore": z(now),
        "pdx:notAfter": z(now + timedelta(days=terms.duration_days)),
    }


def accept(
    session: Session, caller: Caller, negotiation_id: str, *, now: datetime, trail: Trail
) -> NegotiationPublic:
    """The consumer accepts the provider's offer; the agreement document is fixed."""
    n = _step(session, caller, negotiation_id, _ACCEPT)
    n.draft = _draft(session, n, now)
    n.draft_digest = digest_of(n.draft)
    return _moved(session, trail, caller, n, _ACCEPT, now)


def _sign(
    session: Session, caller: Caller, negotiation_id: str, body: SignIn, move: _Move, *,
    now: datetime, trail: Trail,
) -> NegotiationPublic:  # fmt: skip
    """The move's side signs the fixed agreement document's digest with a key it registered."""
    n = _step(session, caller, negotiation_id, move)
    assert n.draft_digest is not None
    require_verified(session, n.consumer_org, n.provider_org)
    org_id = n.provider_org if move.side == "provider" else n.consumer_org
    signature = check_signature(
        session, org_id, body.key_id, n.draft_digest.encode(), body.signature
    )
    n.signatures = {**n.signatures, move.side: signature}
    return _moved(session, trail, caller, n, move, now)


# The provider signs the accepted agreement (DSP ContractAgreementMessage); the consumer
# signs the same document (DSP ContractAgreementVerificationMessage).
agree = partial(_sign, move=_AGREE)
verify = partial(_sign, move=_VERIFY)


def finalize(
    session: Session, caller: Caller, negotiation_id: str, *, now: datetime, trail: Trail
) -> NegotiationPublic:
    """The provider finalizes: the agreement is recorded and in force (DSP FINALIZED)."""
    n = _step(session, caller, negotiation_id, _FINALIZE)
    require_verified(session, n.consumer_org, n.provider_org)
    assert n.draft is not None and n.draft_digest is not None
    if set(n.signatures) != {"consumer", "provider"}:
        raise Conflict("both parties must have signed the agreement")
    terms = Terms.model_validate(n.terms)
    datasets = list(n.draft["pdx:datasets"])
    _check_epsilon_shares(session, datasets, terms.epsilon_share)
    uid = str(n.draft["@id"]).removeprefix("urn:uuid:")
    not_before = datetime.fromisoformat(str(n.draft["pdx:notBefore"]))
    not_after = datetime.fromisoformat(str(n.draft["pdx:notAfter"]))
    agreement = Agreement(
        id=uid,
        origin="negotiation",
        negotiation_id=n.id,
        product_id=n.product_id,
        consumer_org=n.consumer_org,
        provider_org=n.provider_org,
        datasets=datasets,
        purpose=n.requirements["purpose"],
        dua_reference=n.requirements["dua_reference"],
        legal_basis=n.requirements["legal_basis"],
        terms=n.terms,
        document=n.draft,
        digest=n.draft_digest,
        signatures=n.signatures,
        state=FINALIZED,
        not_before=not_before,
        not_after=not_after,
        used_computations=0,
        used_rows=0,
        used_epsilon=0.0,
        created_at=now,
    )
    session.add(agreement)
    n.agreement_id = agreement.id
    session.flush()
    index = _transition(session, trail, caller, n, _FINALIZE.state, _FINALIZE.action, now,
                        f"agreement={agreement.id}")  # fmt: skip
    agreement.ledger_index = index
    agreement_public(agreement, now=now)  # validates the stored agreement
    return _public(n, index)


def terminate(
    session: Session, caller: Caller, negotiation_id: str, *, reason: str, now: datetime,
    trail: Trail,
) -> NegotiationPublic:  # fmt: skip
    """Either party ends a negotiation before it is finalized (DSP termination message)."""
    n, _side = _load(session, caller, negotiation_id)
    if n.state in _DONE:
        raise Conflict(f"the negotiation is already {n.state}", negotiation_state=n.state)
    index = _transition(session, trail, caller, n, NegotiationState.TERMINATED, "terminate", now,
                        f"reason={reason[:200]}")  # fmt: skip
    return _public(n, index)


def get_negotiation(
    session: Session, caller: Caller, negotiation_id: str, *, sees_all: bool
) -> NegotiationPublic:
    n = party_row(
        session, Negotiation, negotiation_id, caller, noun="negotiation", sees_all=sees_all
    )
    return _public(n)


def list_negotiations(
    session: Session, caller: Caller, *, sees_all: bool, limit: int, offset: int
) -> tuple[list[NegotiationPublic], int]:
    stmt = party_rows(Negotiation, caller, sees_all=sees_all)
    order = (Negotiation.created_at.desc(), Negotiation.id)
    rows, total = offset_page(session, stmt, order, limit=limit, offset=offset)
    return [_public(n) for n in rows], total
