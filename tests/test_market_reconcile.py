"""Must-show 2: 1,000 metered computations across 10 agreements settle to the cent.

The computations are metered through `exchange.market.meter_computation`, the function
`request_computation` calls in the request's transaction (with the agreement row locked,
as the request locks it); 1,000 real operator runs in bubblewrap sandboxes would take
most of an hour on the 2 shared cores, and what is under test here is the meter and the
settlement, not the operators (tests/test_market_flow.py meters real requests over HTTP).
The agreements themselves come from real negotiations over HTTP, on `open` data.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

import crypto
from audit.verify import verify_export
from exchange.accounts import Caller, OrgKind, Role
from exchange.market import meter_computation
from exchange.market._common import digest_of
from exchange.market.models import Agreement, MeterRecord
from exchange.models import Dataset
from gateway.platform import Platform
from ledger import export
from ledger.records import decode_leaf
from tests.helpers.api import login
from tests.helpers.i17_market import (
    credit_code,
    list_product,
    negotiate,
    offer,
    party,
    product_body,
)
from tests.test_api_contracts import make_org
from tests.test_market_flow import register

PRICES: list[dict[str, Any]] = [
    {"price_model": "per_computation", "price": "0.37"},
    {"price_model": "per_1k_rows", "price": "1.23"},  # fractions of a fen: rounded per record
    {"price_model": "per_computation", "price": "12.99"},
    {"price_model": "per_1k_rows", "price": "0.07"},
    {"price_model": "subscription", "price": "99.00", "period_days": 30},
    {"price_model": "free", "price": "0"},
    {"price_model": "per_computation", "price": "0.01"},
    {"price_model": "per_1k_rows", "price": "33.33"},
    {"price_model": "per_computation", "price": "5.55"},
    {"price_model": "per_1k_rows", "price": "2.71"},
]


def test_thousand_metered_computations_reconcile_to_the_cent(
    api: TestClient, creds: dict[str, Any], platform: Platform, tmp_path: Path
) -> None:
    prov = party(api, creds, "provider-transport", seed=1)
    ent_a = party(api, creds, "enterprise-fintech", algorithm="sm2-sm3", seed=2)
    org_b, headers_b = make_org(api, creds, "Harbour Mobility Research", "enterprise")
    r = api.post(
        f"/v1/market/parties/{org_b}/verify",
        headers=login(api, creds, "operator-admin"),
        json={"credit_code": credit_code(3)},
    )
    assert r.status_code == 200, r.text
    key_b = crypto.generate_key_pair("ed25519")
    r = api.post(
        f"/v1/market/parties/{org_b}/keys",
        headers=headers_b,
        json={
            "algorithm": "ed25519",
            "public_key": base64.b64encode(key_b.public_bytes()).decode(),
        },
    )
    ent_b = type(ent_a)(org_b, headers_b, key_b, r.json()["keys"][-1]["id"])
    datasets = [
        register(api, prov.headers, f"open stops {i}", "general-1", "open", rows=37 + 11 * i)
        for i in range(5)
    ]
    agreements: list[str] = []
    negotiations: list[str] = []
    for i, price in enumerate(PRICES):
        ds = datasets[i % 5]
        body = product_body(
            [ds["id"]],
            title=f"开放公交站点数据 {i}",
            offers=[offer(max_computations=None, **price)],
        )
        product = list_product(api, prov, body)
        requester = ent_a if i % 2 == 0 else ent_b
        final = negotiate(api, requester, prov, product["offers"][0]["id"])
        agreements.append(final["agreement_id"])
        negotiations.append(final["id"])

    # 1,000 computations, metered as the request meters them: one transaction each.
    rng = random.Random(17)
    start = datetime.now(UTC) - timedelta(seconds=1)
    callers = {
        ent_a.org_id: Caller(
            "pdx-ent-a", ent_a.org_id, OrgKind.ENTERPRISE, frozenset({Role.DATA_CONSUMER})
        ),
        org_b: Caller("pdx-ent-b", org_b, OrgKind.ENTERPRISE, frozenset({Role.DATA_CONSUMER})),
    }
    for n in range(1000):
        aid = agreements[n % 10] if n < 500 else rng.choice(agreements)
        with platform.session() as s, s.begin():
            agreement = s.get(Agreement, aid, with_for_update=True)
            assert agreement is not None
            dataset = s.get(Dataset, agreement.datasets[0])
            assert dataset is not None
            meter_computation(
                s, platform.trail, callers[agreement.consumer_org], agreement=agreement,
                computation_id=str(uuid.uuid4()), operator="stats.count",
                purpose=agreement.purpose, datasets=[dataset], epsilon=0.0, now=platform.now(),
            )  # fmt: skip

    operator = login(api, creds, "operator-admin")
    end = datetime.now(UTC)
    r = api.post(
        "/v1/market/settlements",
        headers=operator,
        json={"period_start": start.isoformat(), "period_end": end.isoformat()},
    )
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["meter_records"] == 1000
    statements = run["statements"]
    per_agreement = {
        s["agreement_id"]: s["statement"] for s in statements if s["kind"] == "agreement"
    }
    assert set(per_agreement) == set(agreements)

    def fen(text: str) -> int:
        return int(Decimal(text) * 100)

    with platform.session() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(MeterRecord)
                .where(MeterRecord.statement_id.is_(None))
            )
            == 0
        )
        sums: dict[str, int] = dict(
            s.execute(
                select(MeterRecord.agreement_id, func.sum(MeterRecord.amount_fen)).group_by(
                    MeterRecord.agreement_id
                )
            ).all()
        )
        counts: dict[str, int] = dict(
            s.execute(
                select(MeterRecord.agreement_id, func.count()).group_by(MeterRecord.agreement_id)
            ).all()
        )
    subscription = fen("99.00")
    total_gross = 0
    for i, aid in enumerate(agreements):
        st = per_agreement[aid]
        extra = subscription if PRICES[i]["price_model"] == "subscription" else 0
        assert fen(st["gross"]) == int(sums.get(aid, 0)) + extra, (i, st["gross"])
        assert st["meter_records"] == counts[aid]
        assert sum(fen(line["amount"]) for line in st["lines"]) == fen(st["gross"])
        assert fen(st["fee"]) + fen(st["net"]) == fen(st["gross"])
        assert fen(st["fee"]) == int(
            (Decimal(st["gross"]) * Decimal("0.05") * 100).to_integral_value("ROUND_HALF_UP")
        )
        total_gross += fen(st["gross"])
    assert sum(counts.values()) == 1000
    provider = next(s["statement"] for s in statements if s["kind"] == "provider")
    requesters = [s["statement"] for s in statements if s["kind"] == "requester"]
    assert fen(provider["gross"]) == total_gross == sum(fen(q["total"]) for q in requesters)
    assert fen(provider["fee"]) == sum(fen(per_agreement[a]["fee"]) for a in agreements)
    assert fen(provider["net"]) == total_gross - fen(provider["fee"])
    assert {q["requester_org"] for q in requesters} == {ent_a.org_id, org_b}

    # Every statement is signed by the ledger key and is a ledger entry with its digest.
    leaves: list[dict[str, Any]] = []
    with platform.session() as s:
        size = platform.ledger.size(s)
        while len(leaves) < size:
            page = platform.ledger.entries(s, start=len(leaves), end=size)
            leaves.extend(decode_leaf(e.leaf) for e in page)
    by_object: dict[Any, list[dict[str, Any]]] = {}
    for leaf in leaves:
        by_object.setdefault(leaf.get("object_id"), []).append(leaf)
    for st in statements:
        body = {k: v for k, v in st["statement"].items() if k != "signer"}
        assert digest_of(body) == st["digest"]
        signer = st["statement"]["signer"]
        key = crypto.load_verifying_key(signer["algorithm"], base64.b64decode(signer["public_key"]))
        assert key.verify(st["digest"].encode(), base64.b64decode(st["signature"]))
        [entry] = by_object[st["id"]]
        assert (
            entry["type"] == "market.statement_issued" and entry["payload_digest"] == st["digest"]
        )
    assert sum(1 for leaf in leaves if leaf["type"] == "market.metered") == 1000
    for nid in negotiations:
        assert [e["type"] for e in by_object[nid]] == [
            f"market.negotiation_{state}"
            for state in ("requested", "offered", "accepted", "agreed", "verified", "finalized")
        ]

    # The exported ledger verifies with the public verifier key alone.
    platform.sealer.seal_now()
    out = tmp_path / "export"
    with platform.session() as s:
        export(s, platform.ledger, out)
    verifier = api.get("/v1/ledger/verifier-key").text.strip()
    report = verify_export(out, [verifier])
    assert report.ok, report.problem
    assert report.entries >= len(leaves)
