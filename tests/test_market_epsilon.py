"""ε shares: the agreements in force on a dataset never share out more than its budget, and a
computation whose ε would exceed its agreement's share is refused in the request's transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exchange.accounts import Caller, OrgKind, Role
from exchange.market import AgreementExhausted, meter_computation
from exchange.market.models import Agreement, MeterRecord
from exchange.models import Dataset
from gateway.platform import Platform
from tests.helpers.api import assert_problem
from tests.helpers.i17_market import list_product, negotiate, offer, party, product_body
from tests.test_market_flow import register


def test_epsilon_shares_and_the_meter(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    prov = party(api, creds, "provider-transport", seed=1)
    ent = party(api, creds, "enterprise-fintech", seed=2)
    ds = register(api, prov.headers, "open stops", "general-1", "open")
    big = list_product(
        api,
        prov,
        product_body([ds["id"]], offers=[offer(epsilon_share=2.0, max_computations=None)]),
    )
    final = negotiate(api, ent, prov, big["offers"][0]["id"])
    # A second share on the same dataset would take the total (3.5) above its budget (3.0).
    more = list_product(
        api, prov, product_body([ds["id"]], title="再来一份", offers=[offer(epsilon_share=1.5)])
    )
    body = {"offer_id": more["offers"][0]["id"], "purpose": "客流分析研究", "dua_reference": "D"}
    r = api.post("/v1/market/negotiations", headers=ent.headers, json=body)
    assert "above its budget" in assert_problem(r, 409, "conflict")["detail"]

    # The meter: 1.5 + 0.5 fits the 2.0 share; another 0.5 does not, and writes nothing.
    caller = Caller("pdx-e", ent.org_id, OrgKind.ENTERPRISE, frozenset({Role.DATA_CONSUMER}))

    def meter(epsilon: float) -> None:
        with platform.session() as s, s.begin():
            agreement = s.get(Agreement, final["agreement_id"], with_for_update=True)
            dataset = s.get(Dataset, ds["id"])
            assert agreement is not None and dataset is not None
            meter_computation(
                s, platform.trail, caller, agreement=agreement, computation_id=str(uuid.uuid4()),
                operator="stats.count", purpose=agreement.purpose, datasets=[dataset],
                epsilon=epsilon, now=platform.now(),
            )  # fmt: skip

    meter(1.5)
    meter(0.5)
    with pytest.raises(AgreementExhausted, match="epsilon would reach 2.5 of 2"):
        meter(0.5)
    with platform.session() as s:
        agreement = s.get(Agreement, final["agreement_id"])
        assert agreement is not None and agreement.used_epsilon == pytest.approx(2.0)
        assert len(s.query(MeterRecord).filter_by(agreement_id=agreement.id).all()) == 2
