"""The market checks (DSL-01, MKT-01..06, CRY-06): a negotiated market passes, each break fails.

The deployment lists a product and finalizes an agreement through the API, then one
control is broken in the database the way a careless operator or an attacker with
database access could, and the run must name exactly that requirement.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from exchange.market.models import Agreement, Offer, Product
from gateway.platform import Platform
from tests.helpers.i16_compliance import new_failures, run_check
from tests.helpers.i17_market import list_product, negotiate, offer, party, product_body
from tests.test_market_flow import register

Creds = dict[str, dict[str, Any]]


def _market(api: TestClient, creds: Creds) -> tuple[str, str]:
    provider = party(api, creds, "provider-transport", seed=3)
    requester = party(api, creds, "enterprise-fintech", algorithm="sm2-sm3", seed=4)
    ds = register(api, provider.headers, "compliance market", "general-2", "conditional")
    product = list_product(
        api, provider, product_body([ds["id"]], offers=[offer(epsilon_share=0.5)])
    )
    done = negotiate(api, requester, provider, product["offers"][0]["id"])
    return product["id"], str(done["agreement_id"])


def _evidence_without_digest(p: Platform, product: str, agreement: str) -> None:
    with p.session() as s, s.begin():
        row = s.get(Product, product)
        assert row is not None and row.provenance is not None
        evidence = [
            {k: v for k, v in e.items() if k != "digest"} for e in row.provenance["evidence"]
        ]
        row.provenance = {**row.provenance, "evidence": evidence}


def _rights_unknown(p: Platform, product: str, agreement: str) -> None:
    with p.session() as s, s.begin():
        s.execute(
            update(Product).where(Product.id == product).values(rights={"held": ["ownership"]})
        )


def _listed_without_precheck(p: Platform, product: str, agreement: str) -> None:
    with p.session() as s, s.begin():
        s.execute(update(Product).where(Product.id == product).values(precheck=None))


def _offer_without_limits(p: Platform, product: str, agreement: str) -> None:
    with p.session() as s, s.begin():
        o = s.scalars(select(Offer).where(Offer.product_id == product)).one()
        o.terms = {**o.terms, "max_computations": None, "max_rows": None}


def _untagged_price(p: Platform, product: str, agreement: str) -> None:
    with p.session() as s, s.begin():
        o = s.scalars(select(Offer).where(Offer.product_id == product)).one()
        o.terms = {**o.terms, "price_model": "free"}  # a free offer with a price


def _shares_above_budget(p: Platform, product: str, agreement: str) -> None:
    with p.session() as s, s.begin():
        a = s.get(Agreement, agreement)
        assert a is not None
        a.terms = {**a.terms, "epsilon_share": 99.0}


def _forged_signature(p: Platform, product: str, agreement: str) -> None:
    with p.session() as s, s.begin():
        a = s.get(Agreement, agreement)
        assert a is not None
        record = dict(a.signatures["consumer"])
        sig = bytearray(base64.b64decode(record["signature"]))
        sig[-1] ^= 1
        record["signature"] = base64.b64encode(bytes(sig)).decode()
        a.signatures = {**a.signatures, "consumer": record}


BREAKS: dict[str, tuple[Callable[[Platform, str, str], None], set[str]]] = {
    "evidence-without-digest": (_evidence_without_digest, {"DSL-01"}),
    "rights-not-of-the-three": (_rights_unknown, {"MKT-01"}),
    "listed-without-precheck": (_listed_without_precheck, {"MKT-02"}),
    "offer-without-count-limits": (_offer_without_limits, {"MKT-03"}),
    "free-offer-with-a-price": (_untagged_price, {"MKT-05"}),
    "epsilon-shares-above-budget": (_shares_above_budget, {"MKT-06"}),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_one_broken_market_control_fails_exactly_its_requirement(
    name: str, api: TestClient, creds: Creds, platform: Platform
) -> None:
    product, agreement = _market(api, creds)
    before = run_check(api, creds)
    statuses = {f["id"]: f["status"] for f in before["findings"]}
    assert new_failures(before) == {}
    assert all(statuses[r] == "pass" for r in ("DSL-01", "MKT-01", "MKT-02", "MKT-03", "MKT-05"))
    assert statuses["MKT-06"] == "pass"
    breaker, expected = BREAKS[name]
    breaker(platform, product, agreement)
    assert set(new_failures(run_check(api, creds))) == expected


def test_a_forged_party_signature_on_an_agreement_fails_cry06(
    api: TestClient, creds: Creds, platform: Platform
) -> None:
    product, agreement = _market(api, creds)
    cry = next(f for f in run_check(api, creds)["findings"] if f["id"] == "CRY-06")
    assert not any(agreement in o for o in cry["evidence"].get("offenders", []))
    _forged_signature(platform, product, agreement)
    cry = next(f for f in run_check(api, creds)["findings"] if f["id"] == "CRY-06")
    assert cry["status"] == "fail"
    assert any(agreement in o and "do not verify" in o for o in cry["evidence"]["offenders"])
