"""Agreements: what the policy checks for a computation, and the meter each computation runs.

A finalized agreement replaces the contract (issue 17): the policy sees it as
`resource.contract` (status `finalized`), migrated contracts included (same ids).
Every computation under an agreement is metered in the request's transaction, after the
agreement row is locked: its operator, delivery and purpose must be the agreement's, and
its count, rows touched and ε must fit what is left; the meter record (with its exact
amount in fen) and its ledger entry are written with the request, or nothing is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.catalogue import Event
from exchange.accounts import Caller
from exchange.errors import AgreementExhausted, OutsideAgreement
from exchange.market._common import ZTime, aware, offset_page, record
from exchange.market.models import Agreement, MeterRecord
from exchange.market.odrl import PriceModel, round_fen, yuan
from exchange.models import Contract, Dataset
from exchange.party_rows import party_row, party_rows
from exchange.trail import Trail
from exchange.views import row_values

__all__ = [
    "AgreementPublic",
    "Metered",
    "agreement_for",
    "agreement_public",
    "get_agreement",
    "in_force",
    "list_agreements",
    "meter_computation",
]

FINALIZED = "finalized"
TERMINATED = "terminated"


class AgreementPublic(BaseModel):
    id: str
    state: str
    origin: str = Field(description="negotiation, or contract (migrated in revision 0024)")
    negotiation_id: str | None
    product_id: str | None
    requester_org: str
    provider_org: str
    datasets: list[str]
    purpose: str
    dua_reference: str | None
    legal_basis: str | None
    terms: dict[str, Any]
    document: dict[str, Any] | None = Field(description="the signed ODRL agreement")
    digest: str | None = Field(description="what both parties signed (sha256 of the document)")
    signatures: dict[str, Any]
    not_before: ZTime
    not_after: ZTime
    in_force: bool
    used: dict[str, Any]
    created_at: ZTime
    ledger_index: int | None


def in_force(agreement: Agreement, now: datetime) -> bool:
    return agreement.state == FINALIZED and (
        aware(agreement.not_before) <= now < aware(agreement.not_after)
    )


def agreement_public(agreement: Agreement, *, now: datetime) -> AgreementPublic:
    return AgreementPublic.model_validate(
        {
            **row_values(AgreementPublic, agreement),
            "requester_org": agreement.consumer_org,
            "in_force": in_force(agreement, now),
            "used": {
                "computations": agreement.used_computations,
                "rows": agreement.used_rows,
                "epsilon": agreement.used_epsilon,
            },
        }
    )


def _rank(
    c: Agreement | Contract, dataset: Dataset, purpose: str, now: datetime
) -> tuple[int, ...]:
    state = c.state if isinstance(c, Agreement) else c.status
    live = state in (FINALIZED, "active") and (aware(c.not_before) <= now < aware(c.not_after))
    return (
        int(live),
        int(dataset.id in c.datasets),
        int(c.purpose == purpose),
        int(state in (FINALIZED, "active")),
        int(isinstance(c, Agreement)),  # an agreement before a deprecated contract
    )


def agreement_for(
    session: Session,
    *,
    consumer_org: str,
    dataset: Dataset,
    purpose: str,
    now: datetime,
    agreement_id: str | None = None,
) -> Agreement | Contract | None:
    """What covers one input of a computation (an agreement, or a deprecated contract).

    The named agreement (or legacy contract), else the best candidate between consumer and
    provider (in force, covering the dataset, for
    the purpose; agreements before deprecated contracts); None when there is none.
    """
    if agreement_id is not None:
        chosen: Agreement | Contract | None = session.get(Agreement, agreement_id)
        if chosen is None:
            chosen = session.get(Contract, agreement_id)
        if chosen is None or chosen.consumer_org != consumer_org:
            return None
        return chosen
    candidates: list[Agreement | Contract] = [
        *session.scalars(
            select(Agreement).where(
                Agreement.consumer_org == consumer_org,
                Agreement.provider_org == dataset.owner_org,
            )
        ),
        *session.scalars(
            select(Contract).where(
                Contract.consumer_org == consumer_org,
                Contract.provider_org == dataset.owner_org,
                # a migrated contract is represented by its agreement
                Contract.id.not_in(select(Agreement.id)),
            )
        ),
    ]
    return max(candidates, key=lambda c: _rank(c, dataset, purpose, now), default=None)


class Metered(BaseModel):
    agreement_id: str
    meter_id: str
    rows: int
    epsilon: float
    amount: str
    ledger_index: int | None


def meter_computation(
    session: Session,
    trail: Trail,
    caller: Caller,
    *,
    agreement: Agreement,
    computation_id: str,
    operator: str,
    purpose: str,
    datasets: Sequence[Dataset],
    epsilon: float,
    now: datetime,
) -> Metered:
    """Check one computation against its (locked) agreement and meter it; refuse if exhausted.

    The caller has locked the agreement row (`FOR UPDATE`) in this transaction, so two
    requests cannot both take the last computation an agreement allows.
    """
    terms = agreement.terms
    rows = sum(d.rows for d in datasets if d.id in agreement.datasets)
    if terms:  # a migrated contract carries no terms: nothing to meter against
        if terms.get("delivery", "computation") != "computation":
            raise OutsideAgreement(f"agreement {agreement.id} grants download, not computation")
        if operator not in terms.get("operators", []):
            raise OutsideAgreement(
                f"operator {operator} is not among agreement {agreement.id}'s operators "
                f"({', '.join(terms.get('operators', []))})",
                agreement_id=agreement.id,
                field="operator",
            )
        if purpose != agreement.purpose:
            raise OutsideAgreement(
                f"purpose '{purpose}' is not agreement {agreement.id}'s", field="purpose"
            )
        _check_limit(agreement, "computations", agreement.used_computations + 1,
                     terms.get("max_computations"))  # fmt: skip
        _check_limit(agreement, "rows", agreement.used_rows + rows, terms.get("max_rows"))
        _check_limit(agreement, "epsilon", agreement.used_epsilon + epsilon,
                     terms.get("epsilon_share"))  # fmt: skip
    agreement.used_computations += 1
    agreement.used_rows += rows
    agreement.used_epsilon += epsilon
    amount = _amount_fen(terms, rows)
    meter = MeterRecord(
        id=str(uuid.uuid4()),
        agreement_id=agreement.id,
        computation_id=computation_id,
        consumer_org=agreement.consumer_org,
        provider_org=agreement.provider_org,
        at=now,
        computations=1,
        rows=rows,
        epsilon=epsilon,
        amount_fen=amount,
        statement_id=None,
    )
    session.add(meter)
    index = record(
        session, trail, caller, Event.MARKET_METERED, "meter", row=meter,
        object_type="meter", object_id=meter.id, now=now, purpose=purpose,
        detail=f"agreement={agreement.id} computation={computation_id} rows={rows} "
        f"epsilon={epsilon} amount={yuan(amount)}",
    ).ledger_index  # fmt: skip
    return Metered(
        agreement_id=agreement.id,
        meter_id=meter.id,
        rows=rows,
        epsilon=epsilon,
        amount=yuan(amount),
        ledger_index=index,
    )


def _check_limit(agreement: Agreement, what: str, would_be: float, limit: float | None) -> None:
    if limit is not None and would_be > limit + 1e-12:
        raise AgreementExhausted(
            f"agreement {agreement.id} is exhausted: {what} would reach {would_be:g} of {limit:g}",
            agreement_id=agreement.id,
            limit=what,
        )


def _amount_fen(terms: dict[str, Any], rows: int) -> int:
    """The metered amount in fen: one rounding (half up) per meter record, none later."""
    model = terms.get("price_model", PriceModel.FREE.value)
    price_fen = int(Decimal(terms.get("price", "0")) * 100)
    if model == PriceModel.PER_COMPUTATION:
        return price_fen
    if model == PriceModel.PER_1K_ROWS:
        return round_fen(Decimal(rows) * price_fen / 1000)
    return 0  # free, or a subscription (charged per period at settlement)


def get_agreement(
    session: Session, caller: Caller, agreement_id: str, *, now: datetime, sees_all: bool
) -> AgreementPublic:
    agreement = party_row(
        session, Agreement, agreement_id, caller, noun="agreement", sees_all=sees_all
    )
    return agreement_public(agreement, now=now)


def list_agreements(
    session: Session,
    caller: Caller,
    *,
    now: datetime,
    sees_all: bool,
    limit: int,
    offset: int,
) -> tuple[list[AgreementPublic], int]:
    stmt = party_rows(Agreement, caller, sees_all=sees_all)
    order = (Agreement.created_at.desc(), Agreement.id)
    rows, total = offset_page(session, stmt, order, limit=limit, offset=offset)
    return [agreement_public(a, now=now) for a in rows], total
