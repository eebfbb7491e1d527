"""Settlement: statements per agreement, provider and enterprise from the meter, and disputes.

A settlement run takes every unsettled meter record in a period and writes, for each
agreement, a statement whose lines (one per UTC day) sum to its meter records exactly;
then one statement per provider (per agreement: gross, platform fee, net) and one per
enterprise (per agreement: amount due). Amounts are integer fen: each meter record was
rounded once when metered, the fee once per agreement (half up), nothing else, so an
enterprise's and a provider's statements reconcile to the cent with the meter. Every
statement is signed by the platform's ledger key and is a ledger entry whose payload
digest is the statement's; the meter records point at their agreement statement.
"""

from __future__ import annotations

import base64
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from audit.catalogue import Event
from exchange.accounts import Caller
from exchange.errors import Forbidden, InvalidInput, NotFound
from exchange.market._common import aware, digest_of, offset_page, record, z
from exchange.market.models import Agreement, Dispute, MeterRecord, Statement
from exchange.market.odrl import PriceModel, fen, round_fen, yuan
from exchange.trail import Trail

__all__ = [
    "DisputeCreate",
    "get_statement",
    "list_disputes",
    "list_statements",
    "SettlementCreate",
    "Signer",
    "open_dispute",
    "settle",
    "statement_public",
]

Signer = Callable[[bytes], tuple[bytes, dict[str, str]]]
"""Sign a digest: (signature, {algorithm, kid, public_key}) — the platform's ledger key."""


class SettlementCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period_start: datetime
    period_end: datetime

    @field_validator("period_start", "period_end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("times need a timezone")
        return value


class DisputeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    line: int = Field(ge=1)
    reason: str = Field(min_length=3, max_length=1000)


@dataclass
class _Acc:
    computations: int = 0
    rows: int = 0
    epsilon: float = 0.0
    fen: int = 0
    ids: list[str] = field(default_factory=list)


def statement_public(s: Statement) -> dict[str, Any]:
    return {
        "id": s.id,
        "settlement_id": s.settlement_id,
        "kind": s.kind,
        "org_id": s.org_id,
        "agreement_id": s.agreement_id,
        "period_start": z(s.period_start),
        "period_end": z(s.period_end),
        "statement": s.body,
        "digest": s.digest,
        "signature": s.signature,
        "created_at": z(s.created_at),
        "ledger_index": s.ledger_index,
    }


def _issue(
    session: Session, trail: Trail, caller: Caller, sign: Signer, body: dict[str, Any], *,
    settlement_id: str, kind: str, org_id: str, agreement_id: str | None,
    start: datetime, end: datetime, now: datetime,
) -> Statement:  # fmt: skip
    statement_id = str(uuid.uuid4())
    body = {"id": statement_id, "settlement_id": settlement_id, "kind": kind, **body}
    digest = digest_of(body)
    signature, signer = sign(digest.encode())
    body_signed = {**body, "signer": signer}
    st = Statement(
        id=statement_id, settlement_id=settlement_id, kind=kind, org_id=org_id,
        agreement_id=agreement_id, period_start=start, period_end=end, body=body_signed,
        digest=digest, signature=base64.b64encode(signature).decode(), created_at=now,
    )  # fmt: skip
    session.add(st)
    record(
        session, trail, caller, Event.MARKET_STATEMENT_ISSUED, "settle", row=st,
        object_type="statement", object_id=statement_id, now=now, digest=digest,
        detail=f"kind={kind} org={org_id} total={body.get('total') or body.get('gross')}",
    )  # fmt: skip
    return st


def settle(
    session: Session,
    caller: Caller,
    body: SettlementCreate,
    *,
    fee_rate: Decimal,
    sign: Signer,
    now: datetime,
    trail: Trail,
) -> dict[str, Any]:
    """Settle a period: agreement, provider and enterprise statements, signed, on the ledger."""
    start, end = body.period_start, body.period_end
    if end <= start or end > now:
        raise InvalidInput("the period must end after it starts, and not in the future")
    settlement_id = str(uuid.uuid4())
    per: dict[str, dict[str, _Acc]] = defaultdict(lambda: defaultdict(_Acc))
    rows = session.execute(
        select(
            MeterRecord.id, MeterRecord.agreement_id, MeterRecord.at, MeterRecord.rows,
            MeterRecord.epsilon, MeterRecord.amount_fen,
        ).where(
            MeterRecord.statement_id.is_(None), MeterRecord.at >= start, MeterRecord.at < end,
        )
    ).all()  # fmt: skip
    for mid, agreement_id, at, n_rows, eps, amount in rows:
        acc = per[agreement_id][aware(at).date().isoformat()]
        acc.computations += 1
        acc.rows += n_rows
        acc.epsilon += eps
        acc.fen += amount
        acc.ids.append(mid)
    subscriptions = session.scalars(
        select(Agreement).where(
            Agreement.state == "finalized", Agreement.not_before < end, Agreement.not_after > start
        )
    ).all()
    agreements = {a.id: a for a in subscriptions}
    missing = [a for a in per if a not in agreements]
    agreements.update(
        {a.id: a for a in session.scalars(select(Agreement).where(Agreement.id.in_(missing)))}
    )
    provider_lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    consumer_lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    issued: list[Statement] = []
    for agreement_id in sorted(agreements):
        a = agreements[agreement_id]
        days = per.get(agreement_id, {})
        subscription = a.terms.get("price_model") == PriceModel.SUBSCRIPTION
        if not days and not subscription:
            continue
        lines = [
            {"line": i + 1, "date": day, "computations": acc.computations, "rows": acc.rows,
             "epsilon": round(acc.epsilon, 9), "amount": yuan(acc.fen)}
            for i, (day, acc) in enumerate(sorted(days.items()))
        ]  # fmt: skip
        gross = sum(acc.fen for acc in days.values())
        if subscription:
            charge = fen(Decimal(a.terms["price"]))
            lines.append({"line": len(lines) + 1, "description": "subscription period",
                          "amount": yuan(charge)})  # fmt: skip
            gross += charge
        fee = round_fen(Decimal(gross) * fee_rate)
        st = _issue(
            session, trail, caller, sign,
            {"agreement_id": a.id, "requester_org": a.consumer_org, "provider_org": a.provider_org,
             "period_start": z(start), "period_end": z(end), "currency": "CNY", "lines": lines,
             "meter_records": sum(acc.computations for acc in days.values()),
             "gross": yuan(gross), "fee": yuan(fee), "net": yuan(gross - fee),
             "fee_rate": str(fee_rate)},
            settlement_id=settlement_id, kind="agreement", org_id=a.provider_org,
            agreement_id=a.id, start=start, end=end, now=now,
        )  # fmt: skip
        issued.append(st)
        ids = [i for acc in days.values() for i in acc.ids]
        for chunk in range(0, len(ids), 5000):
            session.execute(
                update(MeterRecord)
                .where(MeterRecord.id.in_(ids[chunk : chunk + 5000]))
                .values(statement_id=st.id)
            )
        provider_lines[a.provider_org].append(
            {"agreement_id": a.id, "requester_org": a.consumer_org, "statement_id": st.id,
             "gross_fen": gross, "fee_fen": fee}
        )  # fmt: skip
        consumer_lines[a.consumer_org].append(
            {"agreement_id": a.id, "provider_org": a.provider_org, "statement_id": st.id,
             "gross_fen": gross}
        )  # fmt: skip

    def summary(
        kind: str, party: str, org_id: str, lines: list[dict[str, Any]], totals: dict[str, str]
    ) -> Statement:
        """A party's statement over its agreement statements of the period."""
        return _issue(
            session, trail, caller, sign,
            {party: org_id, "period_start": z(start), "period_end": z(end), "currency": "CNY",
             "lines": [{"line": i + 1, **line} for i, line in enumerate(lines)], **totals},
            settlement_id=settlement_id, kind=kind, org_id=org_id, agreement_id=None,
            start=start, end=end, now=now,
        )  # fmt: skip

    for org_id, plines in sorted(provider_lines.items()):
        gross = sum(p["gross_fen"] for p in plines)
        fee = sum(p["fee_fen"] for p in plines)
        issued.append(summary(
            "provider", "provider_org", org_id,
            [{"agreement_id": p["agreement_id"], "requester_org": p["requester_org"],
              "statement_id": p["statement_id"], "gross": yuan(p["gross_fen"]),
              "fee": yuan(p["fee_fen"]), "net": yuan(p["gross_fen"] - p["fee_fen"])}
             for p in plines],
            {"gross": yuan(gross), "fee": yuan(fee), "net": yuan(gross - fee)},
        ))  # fmt: skip
    for org_id, clines in sorted(consumer_lines.items()):
        total = sum(c["gross_fen"] for c in clines)
        issued.append(summary(
            "requester", "requester_org", org_id,
            [{"agreement_id": c["agreement_id"], "provider_org": c["provider_org"],
              "statement_id": c["statement_id"], "amount": yuan(c["gross_fen"])}
             for c in clines],
            {"total": yuan(total)},
        ))  # fmt: skip
    return {
        "settlement_id": settlement_id,
        "period_start": z(start),
        "period_end": z(end),
        "meter_records": len(rows),
        "statements": [statement_public(s) for s in issued],
    }


def _party_of(session: Session, st: Statement, org_id: str) -> bool:
    if st.org_id == org_id:
        return True
    if st.agreement_id is not None:
        a = session.get(Agreement, st.agreement_id)
        return a is not None and org_id in (a.consumer_org, a.provider_org)
    return False


def get_statement(
    session: Session, caller: Caller, statement_id: str, *, sees_all: bool
) -> dict[str, Any]:
    st = session.get(Statement, statement_id)
    if st is None or not (sees_all or _party_of(session, st, caller.org_id)):
        raise NotFound("no such statement", statement_id=statement_id)
    return statement_public(st)


def _party_to_statement(org_id: str) -> ColumnElement[bool]:
    """A statement issued to the organisation or on an agreement it is party to."""
    mine = select(Agreement.id).where(
        or_(Agreement.consumer_org == org_id, Agreement.provider_org == org_id)
    )
    return or_(Statement.org_id == org_id, Statement.agreement_id.in_(mine))


def list_statements(
    session: Session, caller: Caller, *, sees_all: bool, settlement_id: str | None,
    limit: int, offset: int,
) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    stmt = select(Statement)
    if settlement_id:
        stmt = stmt.where(Statement.settlement_id == settlement_id)
    if not sees_all:
        stmt = stmt.where(_party_to_statement(caller.org_id))
    order = (Statement.created_at, Statement.id)
    rows, total = offset_page(session, stmt, order, limit=limit, offset=offset)
    return [statement_public(s) for s in rows], total


def list_disputes(
    session: Session, caller: Caller, *, sees_all: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Disputes on statements the caller is party to (all for overseers), newest first."""
    stmt = select(Dispute, Statement).join(Statement, Statement.id == Dispute.statement_id)
    if not sees_all:
        stmt = stmt.where(_party_to_statement(caller.org_id))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(
        stmt.order_by(Dispute.created_at.desc(), Dispute.id).limit(limit).offset(offset)
    ).all()
    out = []
    for d, st in rows:
        lines = st.body.get("lines", [])
        out.append(
            {"id": d.id, "statement_id": st.id, "statement_kind": st.kind,
             "agreement_id": st.agreement_id, "line": d.line,
             "disputed": lines[d.line - 1] if 0 < d.line <= len(lines) else None,
             "state": d.state, "opened_by_org": d.opened_by_org, "reason": d.reason,
             "created_at": z(d.created_at), "ledger_index": d.ledger_index}
        )  # fmt: skip
    return out, total


def open_dispute(
    session: Session, caller: Caller, statement_id: str, body: DisputeCreate, *,
    now: datetime, trail: Trail,
) -> dict[str, Any]:  # fmt: skip
    """A party disputes one line of a statement it is party to."""
    st = session.get(Statement, statement_id)
    if st is None or not _party_of(session, st, caller.org_id):
        raise NotFound("no such statement", statement_id=statement_id)
    if not caller.roles:
        raise Forbidden("no role")
    lines = st.body.get("lines", [])
    if body.line > len(lines):
        raise InvalidInput(f"the statement has {len(lines)} lines", field="line")
    dispute = Dispute(
        id=str(uuid.uuid4()), statement_id=st.id, line=body.line, opened_by_org=caller.org_id,
        opened_by=caller.client_id, reason=body.reason, state="open", created_at=now,
    )  # fmt: skip
    session.add(dispute)
    index = record(
        session, trail, caller, Event.MARKET_DISPUTE_OPENED, "dispute", row=dispute,
        object_type="dispute", object_id=dispute.id, now=now,
        detail=f"statement={st.id} line={body.line}",
    ).ledger_index  # fmt: skip
    return {
        "id": dispute.id,
        "statement_id": st.id,
        "line": body.line,
        "disputed": lines[body.line - 1],
        "state": dispute.state,
        "opened_by_org": caller.org_id,
        "reason": body.reason,
        "created_at": z(now),
        "ledger_index": index,
    }
