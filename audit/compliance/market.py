"""Market checks: provenance, rights, listing, circulation, pricing, ε shares, signatures."""

from __future__ import annotations

from collections.abc import Callable

from audit.compliance.base import (
    Check,
    CheckContext,
    Finding,
    MarketFacts,
    ProductFact,
    fail,
    na,
    ok,
    verdict,
)

THREE_RIGHTS = ("holding", "processing_use", "product_operation")
_EPS = 1e-9


def _facts(c: CheckContext) -> MarketFacts:
    out: MarketFacts = c.memo("market", lambda: c.facts.market(c.session))
    return out


def _listing_check(rid: str, offenders: Callable[[list[ProductFact]], list[str]]) -> Check:
    """A check over the listed products: not applicable with none listed, else their verdict."""

    def check(c: CheckContext) -> Finding:
        listed = [p for p in _facts(c).products if p.listed]
        if not listed:
            return na(rid, "no product is listed")
        return verdict(rid, offenders(listed), listed=len(listed))

    return check


_dsl01 = _listing_check(
    "DSL-01",
    lambda listed: [
        p.id
        for p in listed
        if not p.provenance_statement or p.evidence == 0 or p.evidence_with_digest < p.evidence
    ],
)


def _mkt01(c: CheckContext) -> Finding:
    m = _facts(c)
    if not m.products:
        return na("MKT-01", "no product exists")
    bad = [f"product {p.id}: rights held not recorded" for p in m.products if not p.rights_held]
    bad += [
        f"product {p.id}: {r} is not a right of 数据二十条"
        for p in m.products
        for r in (*p.rights_held, *p.rights_granted)
        if r not in THREE_RIGHTS
    ]
    bad += [
        f"agreement {a.id}: the rights it grants are not recorded"
        for a in m.agreements
        if a.origin == "negotiation" and a.rights_granted is None
    ]
    return verdict("MKT-01", bad, products=len(m.products), agreements=len(m.agreements))


def _breaks_listing_rules(listed: list[ProductFact]) -> list[str]:
    bad = [f"{p.id}: listed without a passing pre-check" for p in listed if not p.precheck_passed]
    bad += [f"{p.id}: listed without provenance" for p in listed if not p.provenance_statement]
    bad += [
        f"{p.id}: offers download of data that is not open"
        for p in listed
        if "download" in p.delivery_modes and not p.open_data
    ]
    return bad


_mkt02 = _listing_check("MKT-02", _breaks_listing_rules)


def _scope_undefined(listed: list[ProductFact]) -> list[str]:
    bad = [f"{p.id}: listing not on the ledger" for p in listed if not p.on_ledger]
    for p in listed:
        for i, o in enumerate(p.offers):
            missing = [k for k in ("purposes", "duration_days") if not o.get(k)]
            if o.get("delivery") == "computation" and not o.get("operators"):
                missing.append("operators")
            if o.get("max_computations") is None and o.get("max_rows") is None:
                missing.append("count limit")
            if not p.open_data and o.get("epsilon_share") is None:
                missing.append("ε share")
            if missing:
                bad.append(f"{p.id} offer {i}: no {', '.join(missing)}")
    return bad


_mkt03 = _listing_check("MKT-03", _scope_undefined)


def _mkt05(c: CheckContext) -> Finding:
    products = _facts(c).products
    if not products:
        return na("MKT-05", "no product exists")
    bad = []
    for p in products:
        if not p.offers and p.listed:
            bad.append(f"{p.id}: listed without an offer")
        for i, o in enumerate(p.offers):
            model = o.get("price_model")
            free = str(o.get("price", "0")) in ("0", "0.00", "0.0")
            if model is None or (model == "free") != free:
                bad.append(f"{p.id} offer {i}: not tagged free or paid by its price model")
    return verdict("MKT-05", bad, products=len(products))


def _mkt06(c: CheckContext) -> Finding:
    m = _facts(c)
    active = [a for a in m.agreements if a.state == "finalized" and a.epsilon_share]
    if not active:
        return na("MKT-06", "no agreement in force holds an ε share")
    shares: dict[str, float] = {}
    for a in active:
        for d in a.datasets:
            shares[d] = shares.get(d, 0.0) + float(a.epsilon_share or 0)
    bad = [
        f"dataset {d}: ε shares {total:g} above its budget {m.epsilon_budget.get(d, 0):g}"
        for d, total in sorted(shares.items())
        if total > m.epsilon_budget.get(d, 0.0) + _EPS
    ]
    return verdict("MKT-06", bad, datasets=len(shares))


def _cry06(c: CheckContext) -> Finding:
    m = _facts(c)
    bad = [
        f"agreement {a.id}: party signatures do not verify"
        for a in m.agreements
        if a.origin == "negotiation" and (a.signatures < 2 or not a.signatures_verify)
    ]
    if m.unsigned_approvals:
        bad.append(
            f"{m.unsigned_approvals} provider approvals carry no signature by the provider's key"
            " that verifies"
        )
    if not m.agreements and not m.unsigned_approvals and not m.signed_approvals:
        return na("CRY-06", "no agreement or approval to prove yet (blocks: AUD-03)")
    if bad:
        return fail("CRY-06", f"{len(bad)} acts cannot be proven to their party", offenders=bad)
    return ok(
        "CRY-06",
        "every agreement's and provider approval's party signatures verify",
        agreements=len(m.agreements),
        approvals=m.signed_approvals,
    )


CHECKS: dict[str, Check] = {
    "DSL-01": _dsl01,
    "MKT-01": _mkt01,
    "MKT-02": _mkt02,
    "MKT-03": _mkt03,
    "MKT-05": _mkt05,
    "MKT-06": _mkt06,
    "CRY-06": _cry06,
}
