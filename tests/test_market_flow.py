"""The market through the API: list with the pre-check, negotiate, compute under the agreement,
settle, dispute — refusals included; every step on the ledger (SQLite and PostgreSQL).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

import crypto
from gateway.platform import Platform
from ledger.records import decode_leaf
from tests.helpers.api import assert_problem, login
from tests.helpers.i17_market import (
    Party,
    list_product,
    offer,
    party,
    product_body,
)
from tests.test_api_contracts import make_org, measure_csv

PURPOSE = "客流分析研究"


def register(
    api: TestClient,
    headers: dict[str, str],
    name: str,
    level: str,
    open_attribute: str,
    *,
    pi: bool = False,
    rows: int = 40,
) -> dict[str, Any]:
    meta = {
        "name": name,
        "classification_path": ["transport", "ridership", "counts"],
        "level": level,
        "impact_object": "public-interest",
        "impact_degree": "general",
        "source_agency": "Municipal Transport Bureau",
        "accountable_department": "Ticketing office",
        "pi": pi,
        "sensitive_pi": False,
        "share_attribute": "conditional" if open_attribute != "open" else "unconditional",
        "open_attribute": open_attribute,
    }
    files = {
        "metadata": (None, json.dumps(meta), "application/json"),
        "file": ("data.csv", measure_csv(len(name), rows).encode(), "text/csv"),
    }
    r = api.post("/v1/datasets", headers=headers, files=files)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def ledger_types(platform: Platform, object_id: str) -> list[str]:
    with platform.session() as s:
        return [
            decode_leaf(e.leaf)["type"] for e in platform.ledger.entries(s, object_id=object_id)
        ]


def test_listing_precheck_refuses_and_attaches_its_result(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    prov = party(api, creds, "provider-transport")
    cond = register(api, prov.headers, "ridership by line", "general-2", "conditional")
    open_pi = register(api, prov.headers, "open riders", "general-1", "open", pi=True)
    open_plain = register(api, prov.headers, "open timetable", "general-1", "open")

    def attempt(body: dict[str, Any]) -> tuple[str, Any]:
        r = api.post("/v1/market/products", headers=prov.headers, json=body)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        return pid, api.post(f"/v1/market/products/{pid}/list", headers=prov.headers)

    # 1. No provenance: refused by the policy, the product stays a draft, no listing entry.
    pid, r = attempt(product_body([cond["id"]], provenance=None))
    assert "provenance statement" in assert_problem(r, 403)["detail"]
    assert api.get(f"/v1/market/products/{pid}", headers=prov.headers).json()["state"] == "draft"
    assert ledger_types(platform, pid) == ["market.product_created"]
    # 2. A download offer on data that is not open.
    download = offer(delivery="download", operators=[])
    _, r = attempt(product_body([cond["id"]], offers=[download]))
    assert "only on open data" in assert_problem(r, 403)["detail"]
    # 3. Personal information offered for download, even when open.
    _, r = attempt(product_body([open_pi["id"]], delivery_modes=["download"], offers=[download]))
    assert "personal information" in assert_problem(r, 403)["detail"]
    # Another provider cannot list this one's product.
    other = login(api, creds, "provider-health")
    r = api.post(f"/v1/market/products/{pid}/list", headers=other)
    assert_problem(r, 403)
    # Open data without PI may be downloaded: listed, with the pre-check's result attached.
    pid, r = attempt(
        product_body([open_plain["id"]], delivery_modes=["download"], offers=[download])
    )
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["state"] == "listed" and listed["precheck"]["passed"] is True
    assert listed["precheck"]["decision_id"]
    assert listed["precheck"]["checked"]["delivery_modes"] == ["download"]
    assert ledger_types(platform, pid) == ["market.product_created", "market.product_listed"]
    assert listed["offers"][0]["policy"]["@type"] == "odrl:Offer"


def _sign_with(p: Party, digest: str, key: crypto.SigningKeyPair) -> dict[str, str]:
    return {"key_id": p.key_id, "signature": base64.b64encode(key.sign(digest.encode())).decode()}


def test_whole_flow_negotiate_compute_settle_with_refusals(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    api = capi
    prov = party(api, creds, "provider-transport", algorithm="ed25519", seed=1)
    ent = party(api, creds, "enterprise-fintech", algorithm="sm2-sm3", seed=2)
    ds = register(api, prov.headers, "ridership by line", "general-2", "conditional")
    product = list_product(api, prov, product_body([ds["id"]]))
    offer_id = product["offers"][0]["id"]

    # The catalog finds it by a Chinese word, names the provider, and counts.
    r = api.get("/v1/catalog", params={"q": "客流", "operator": "stats.count"}, headers=ent.headers)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 1 and page["items"][0]["provider_name"] == "Municipal Transport Bureau"
    assert api.get("/v1/catalog", params={"q": "医院"}, headers=ent.headers).json()["total"] == 0

    # An enterprise whose identity nobody verified cannot even ask.
    _, stranger = make_org(api, creds, "Unverified Analytics", "enterprise")
    body = {"offer_id": offer_id, "purpose": PURPOSE, "dua_reference": "DUA-1"}
    r = api.post("/v1/market/negotiations", headers=stranger, json=body)
    assert_problem(r, 403, "party-not-verified")
    # Requirements surface when negotiating: no DUA reference, a purpose the offer lacks.
    r = api.post(
        "/v1/market/negotiations", headers=ent.headers, json={**body, "dua_reference": None}
    )
    assert_problem(r, 422, "invalid-input")
    r = api.post(
        "/v1/market/negotiations", headers=ent.headers, json={**body, "purpose": "营销推广"}
    )
    assert_problem(r, 422, "invalid-input")

    # Either party may end a negotiation; nothing happens on it afterwards.
    r = api.post("/v1/market/negotiations", headers=ent.headers, json=body)
    ended = api.post(
        f"/v1/market/negotiations/{r.json()['id']}/terminate",
        headers=prov.headers,
        json={"reason": "价格未谈妥"},
    )
    assert ended.json()["state"] == "terminated", ended.text
    r = api.post(f"/v1/market/negotiations/{r.json()['id']}/accept", headers=ent.headers)
    assert_problem(r, 409)

    # Request with a counter-offer, the provider's offer, another counter, accept.
    terms = {**product["offers"][0]["terms"], "price": "10.00"}
    r = api.post("/v1/market/negotiations", headers=ent.headers, json={**body, "terms": terms})
    assert r.status_code == 201, r.text
    nid = r.json()["id"]
    url = f"/v1/market/negotiations/{nid}"
    assert_problem(api.post(f"{url}/accept", headers=ent.headers), 409)  # nothing offered yet
    r = api.post(f"{url}/offer", headers=prov.headers, json={"terms": {**terms, "price": "11.00"}})
    assert r.json()["state"] == "offered", r.text
    r = api.post(f"{url}/request", headers=ent.headers, json={"terms": {**terms, "price": "10.50"}})
    assert r.json()["state"] == "requested", r.text
    r = api.post(f"{url}/offer", headers=prov.headers, json={"terms": {**terms, "price": "10.50"}})
    r = api.post(f"{url}/accept", headers=ent.headers)
    assert r.status_code == 200, r.text
    digest = r.json()["agreement_digest"]
    assert r.json()["agreement_document"]["@type"] == "odrl:Agreement"
    # Signatures: a key the provider does not hold, or another document, are refused.
    forged = crypto.generate_key_pair("ed25519")
    assert_problem(
        api.post(f"{url}/agree", headers=prov.headers, json=_sign_with(prov, digest, forged)), 403
    )
    assert_problem(api.post(f"{url}/agree", headers=prov.headers, json=prov.sign("sha256:00")), 403)
    assert_problem(api.post(f"{url}/agree", headers=prov.headers, json=ent.sign(digest)), 422)
    assert_problem(api.post(f"{url}/finalize", headers=prov.headers), 409)
    for step, who, payload in (
        ("agree", prov, prov.sign(digest)),
        ("verify", ent, ent.sign(digest)),
        ("finalize", prov, None),
    ):
        r = api.post(f"{url}/{step}", headers=who.headers, json=payload)
        assert r.status_code == 200, r.text
    final = r.json()
    assert [t["state"] for t in final["transitions"]] == [
        "requested", "offered", "requested", "offered", "accepted", "agreed", "verified",
        "finalized",
    ]  # fmt: skip
    assert ledger_types(platform, nid) == [
        f"market.negotiation_{t['state']}" for t in final["transitions"]
    ]
    aid = final["agreement_id"]
    agreement = api.get(f"/v1/market/agreements/{aid}", headers=ent.headers).json()
    assert agreement["in_force"] and agreement["digest"] == digest
    # Both signatures verify with the public keys alone (the platform holds no private key).
    for side, who in (("provider", prov), ("consumer", ent)):
        sig = agreement["signatures"][side]
        pub = crypto.load_verifying_key(sig["algorithm"], base64.b64decode(sig["public_key"]))
        assert pub == who.key.public_key()
        assert pub.verify(digest.encode(), base64.b64decode(sig["signature"]))
    assert {s["algorithm"] for s in agreement["signatures"].values()} == {"ed25519", "sm2-sm3"}

    # Computations under the agreement: metered; refused outside it and once exhausted.
    def ask(operator: str, purpose: str = PURPOSE) -> Any:
        return api.post(
            "/v1/computations",
            headers=ent.headers,
            json={"operator": operator, "inputs": [ds["id"]],
                  "params": {"columns": ["age"], "clip": [0, 120]}
                  if operator != "stats.count" else {}, "purpose": purpose, "agreement_id": aid},
        )  # fmt: skip

    assert_problem(ask("stats.variance"), 403, "outside-agreement")
    assert_problem(ask("stats.count", purpose="营销推广"), 403)  # the policy: not the purpose
    first, second = ask("stats.count"), ask("stats.mean")
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
    assert_problem(ask("stats.count"), 403, "agreement-exhausted")
    agreement = api.get(f"/v1/market/agreements/{aid}", headers=prov.headers).json()
    # general-2 is DP now: ε 0.8 per request (privacy issue).
    assert agreement["used"] == {"computations": 2, "rows": 80, "epsilon": 1.6}
    with platform.session() as s:
        leaves = [decode_leaf(e.leaf) for e in platform.ledger.entries(s)]
    metered = [m for m in leaves if m["type"] == "market.metered"]
    assert len(metered) == 2 and {m["purpose"] for m in metered} == {PURPOSE}

    # Settlement: signed statements that reconcile to the cent; a disputed line.
    operator = login(api, creds, "operator-admin")
    assert_problem(api.post("/v1/market/settlements", headers=ent.headers, json={}), 403)
    now = datetime.now(UTC)
    period = {"period_start": (now - timedelta(days=1)).isoformat(), "period_end": now.isoformat()}
    r = api.post("/v1/market/settlements", headers=operator, json=period)
    assert r.status_code == 201, r.text
    by_kind = {s["kind"]: s["statement"] for s in r.json()["statements"]}
    assert by_kind["agreement"]["gross"] == "21.00"
    assert by_kind["agreement"]["fee"] == "1.05" and by_kind["agreement"]["net"] == "19.95"
    assert by_kind["provider"]["gross"] == "21.00" and by_kind["requester"]["total"] == "21.00"
    for s in r.json()["statements"]:
        assert ledger_types(platform, s["id"]) == ["market.statement_issued"]
    mine = api.get("/v1/market/statements", headers=ent.headers).json()
    assert mine["total"] == 2  # the agreement's and its own; not the provider's
    statement_id = next(s["id"] for s in r.json()["statements"] if s["kind"] == "agreement")
    r = api.post(
        f"/v1/market/statements/{statement_id}/disputes",
        headers=ent.headers,
        json={"line": 1, "reason": "两次计算中一次未返回结果"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["disputed"]["computations"] == 2
    assert ledger_types(platform, r.json()["id"]) == ["market.dispute_opened"]
    r = api.post(
        f"/v1/market/statements/{statement_id}/disputes",
        headers=login(api, creds, "provider-health"),
        json={"line": 1, "reason": "not mine"},
    )
    assert_problem(r, 404)

    # The deprecated contracts route says where to go.
    r = api.get("/v1/contracts", headers=ent.headers)
    assert r.status_code == 200 and r.headers["Deprecation"].startswith("@")
    assert "/v1/market/agreements" in r.headers["Link"]
