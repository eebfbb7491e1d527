"""Market facts for the compliance checks (audit.compliance.MarketFacts), read from the DB.

Signatures are verified again here, with the keys the parties registered: a check that
only counted them would pass a tampered row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.compliance import AgreementFact, MarketFacts, ProductFact
from exchange.errors import ExchangeError
from exchange.jobs import DEFAULT_EPSILON_BUDGET
from exchange.market.models import Agreement, Negotiation, Offer, Product
from exchange.market.parties import check_signature
from exchange.models import Computation, PrivacyBudgetAccount

__all__ = ["market_facts"]


def _signatures_verify(session: Session, signed: dict[str, Any], message: bytes) -> bool:
    """Each stored signature record verifies again with the key its party registered."""
    for record in signed.values():
        try:
            check_signature(
                session,
                str(record.get("org_id")),
                str(record.get("key_id")),
                message,
                str(record.get("signature")),
            )
        except ExchangeError:
            return False
    return True


def _approval_verifies(session: Session, decision: dict[str, Any]) -> bool:
    """A provider decision signed by a key of the deciding organisation, over what it says."""
    record = decision.get("signature")
    if not isinstance(record, dict) or record.get("org_id") != decision.get("org"):
        return False
    message = str(record.get("signed", ""))
    if message.startswith("reject:") == bool(decision.get("approve")):
        return False  # a refusal's signature kept as a yes, or the other way round
    return bool(message) and _signatures_verify(session, {"": record}, message.encode())


def _product(p: Product, offers: list[dict[str, Any]]) -> ProductFact:
    provenance = p.provenance or {}
    evidence = [e for e in provenance.get("evidence") or [] if isinstance(e, dict)]
    rights = p.rights or {}
    return ProductFact(
        id=p.id,
        listed=p.state == "listed",
        provenance_statement=bool(str(provenance.get("statement") or "").strip()),
        evidence=len(evidence),
        evidence_with_digest=sum(1 for e in evidence if e.get("digest")),
        rights_held=[str(r) for r in rights.get("held") or []],
        rights_granted=[str(r) for r in rights.get("granted") or []],
        delivery_modes=sorted({*p.delivery_modes, *(str(o.get("delivery")) for o in offers)}),
        open_data=bool(p.open_data),
        grade=p.grade,
        precheck_passed=bool((p.precheck or {}).get("passed")),
        on_ledger=p.ledger_index is not None,
        offers=offers,
    )


def market_facts(session: Session) -> MarketFacts:
    offers: dict[str, list[dict[str, Any]]] = {}
    for o in session.scalars(select(Offer)):
        offers.setdefault(o.product_id, []).append(dict(o.terms))
    products = [_product(p, offers.get(p.id, [])) for p in session.scalars(select(Product))]
    drafts = {
        n.agreement_id: n.draft_digest
        for n in session.scalars(select(Negotiation).where(Negotiation.agreement_id.is_not(None)))
    }
    agreements = []
    for a in session.scalars(select(Agreement)):
        digest = a.digest or drafts.get(a.id)
        verify = bool(a.signatures) and digest is not None
        granted = (a.document or {}).get("pdx:rightsGranted")
        agreements.append(
            AgreementFact(
                id=a.id,
                origin=a.origin,
                state=a.state,
                datasets=list(a.datasets),
                rights_granted=[str(r) for r in granted] if isinstance(granted, list) else None,
                epsilon_share=(a.terms or {}).get("epsilon_share"),
                signatures=len(a.signatures or {}),
                signatures_verify=verify
                and _signatures_verify(session, dict(a.signatures), str(digest).encode()),
            )
        )
    budgets = {b.dataset_id: b.epsilon_limit for b in session.scalars(select(PrivacyBudgetAccount))}
    wanted = {d for a in agreements for d in a.datasets}
    budget = {d: budgets.get(d, DEFAULT_EPSILON_BUDGET) for d in wanted}
    unsigned = signed = 0
    for decisions in session.scalars(select(Computation.decisions)):
        for d in decisions or []:
            if d.get("action") == "computation.approve":
                if _approval_verifies(session, d):
                    signed += 1
                else:
                    unsigned += 1
    return MarketFacts(products, agreements, budget, unsigned, signed)
