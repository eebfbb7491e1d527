"""The console's market and budget pages over the app (SQLite and PostgreSQL).

An enterprise negotiates from a listing (counter-offer shown, accept, its own signature
pasted), follows its agreement's metering, statements and privacy budget; a provider
creates and lists a product and sees the pre-check; each console action is its API call
(one decision, one ledger entry by the person); other parties' deals stay out of sight,
and a POST without the CSRF token is refused.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

import crypto
from gateway.console import i18n
from gateway.console import market_views as mv
from gateway.platform import Platform
from tests.helpers.api import login
from tests.helpers.i17_market import list_product, negotiate, party, product_body
from tests.helpers.s12_console_market import (
    console_login,
    decisions,
    entries_since,
    ledger_size,
    rival_enterprise,
    text_of,
)
from tests.test_market_flow import register

PURPOSE = "客流分析研究"


def _ask(api: TestClient, headers: dict[str, str], dataset_id: str, agreement_id: str) -> str:
    r = api.post(
        "/v1/computations",
        headers=headers,
        json={"operator": "stats.count", "inputs": [dataset_id], "params": {},
              "purpose": PURPOSE, "agreement_id": agreement_id},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _state(api: TestClient, headers: dict[str, str], nid: str) -> str:
    return str(api.get(f"/v1/market/negotiations/{nid}", headers=headers).json()["state"])


def test_an_enterprise_negotiates_from_a_listing_and_signs_with_its_own_key(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    api = capi
    prov = party(api, creds, "provider-transport", seed=1)
    ent = party(api, creds, "enterprise-fintech", algorithm="sm2-sm3", seed=2)
    ds = register(api, prov.headers, "ridership by line", "general-2", "conditional")
    product = list_product(api, prov, product_body([ds["id"]]))
    offer = product["offers"][0]
    csrf = console_login(api, creds, "enterprise-fintech")
    person = creds["enterprise-fintech"]["person"]["person_id"]

    page = api.get("/console/enterprise/market", params={"q": "客流"})
    assert page.status_code == 200 and product["title"] in page.text
    page = api.get(f"/console/enterprise/market/products/{product['id']}")
    assert offer["id"] in page.text and "csrf" in page.text

    # Requesting an agreement from the offer: the API's one decision and one entry.
    before, size = decisions(platform, "market.negotiate"), ledger_size(platform)
    form = {"offer_id": offer["id"], "product_id": product["id"], "purpose": PURPOSE,
            "dua_reference": "DUA-2026-017"}  # fmt: skip
    assert api.post("/console/enterprise/market/negotiations", data=form).status_code == 403
    assert decisions(platform, "market.negotiate") == before  # no token: nothing decided
    r = api.post(
        "/console/enterprise/market/negotiations",
        data={**form, "csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "/console/market/negotiations/" in r.headers["location"]
    nid = r.headers["location"].rsplit("/", 1)[-1]
    assert decisions(platform, "market.negotiate", at_least=before + 1) == before + 1
    mine = [e for e in entries_since(platform, size) if e["actor"] == person]
    assert [e["type"] for e in mine] == ["market.negotiation_requested"]

    # The provider (its own console session) finds it waiting and counter-offers.
    seller = TestClient(api.app)
    seller_csrf = console_login(seller, creds, "provider-transport")
    page = seller.get("/console/provider/market")
    waiting = page.text.split('id="wait-h"')[1].split("</section>")[0]
    assert f'data-testid="negotiation-{nid}"' in waiting
    counter = {**offer["terms"], "price": "11.00"}
    r = seller.post(
        f"/console/market/negotiations/{nid}/offer",
        data={"csrf": seller_csrf, "terms": json.dumps(counter, ensure_ascii=False)},
    )
    assert r.status_code == 200 and _state(api, ent.headers, nid) == "offered"
    page = api.get(f"/console/market/negotiations/{nid}")
    assert 'data-testid="counter-changes"' in page.text
    changed = text_of(page.text.split('data-testid="counter-changes"')[1].split("</table>")[0])
    assert "price 12.50 11.00" in changed
    assert 'data-testid="step-accept"' in page.text and "step-offer" not in page.text

    # Accept without the token is refused and changes nothing; with it, the digest appears.
    url = f"/console/market/negotiations/{nid}"
    assert api.post(f"{url}/accept", data={}).status_code == 403
    assert _state(api, ent.headers, nid) == "offered"
    r = api.post(f"{url}/accept", data={"csrf": csrf}, follow_redirects=True)
    assert r.status_code == 200 and _state(api, ent.headers, nid) == "accepted"
    digest = api.get(f"/v1/market/negotiations/{nid}", headers=ent.headers).json()[
        "agreement_digest"
    ]
    assert digest in r.text
    sig = prov.sign(digest)
    r = seller.post(
        f"/console/market/negotiations/{nid}/agree",
        data={"csrf": seller_csrf, "key_id": sig["key_id"], "signature": sig["signature"]},
    )
    assert r.status_code == 200 and _state(api, ent.headers, nid) == "agreed"

    # The console holds no key: a signature by a key the enterprise does not hold is refused
    # by the API; the enterprise's own (SDK-style JSON, pasted) is accepted.
    page = api.get(url)
    assert "PartyKey" in page.text and ent.key_id in page.text
    forged = crypto.generate_key_pair("sm2-sm3")
    bad = base64.b64encode(forged.sign(digest.encode())).decode()
    r = api.post(
        f"{url}/verify",
        data={"csrf": csrf, "key_id": ent.key_id, "signature": bad},
        follow_redirects=True,
    )
    assert _state(api, ent.headers, nid) == "agreed"
    assert "does not verify" in r.text
    r = api.post(
        f"{url}/verify",
        data={"csrf": csrf, "key_id": ""},
        files={"signature_file": ("sig.json", json.dumps(ent.sign(digest)).encode(), "text/plain")},
        follow_redirects=True,
    )
    assert r.status_code == 200 and _state(api, ent.headers, nid) == "verified"
    r = seller.post(
        f"/console/market/negotiations/{nid}/finalize",
        data={"csrf": seller_csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "/console/market/agreements/" in r.headers["location"]
    aid = r.headers["location"].rsplit("/", 1)[-1]
    stored = api.get(f"/v1/market/agreements/{aid}", headers=ent.headers).json()
    assert stored["signatures"]["consumer"]["key_id"] == ent.key_id

    # Metering: used against the limits, from the agreement the API returns.
    page = api.get(f"/console/market/agreements/{aid}")
    assert page.status_code == 200
    assert 'data-testid="meter-computations">0 / 2' in page.text
    _ask(api, ent.headers, ds["id"], aid)
    _ask(api, ent.headers, ds["id"], aid)
    page = api.get(f"/console/market/agreements/{aid}")
    assert 'data-testid="meter-computations">2 / 2' in page.text
    assert 'data-testid="meter-rows">80 / ' in page.text
    assert "exhausted" in page.text or "已用尽" in page.text

    # The provider's market page plots ε spent on its dataset over time, named.
    page = seller.get("/console/provider/market")
    plot = page.text.split('id="eps-h"')[1].split("</section>")[0]
    assert "<polyline" in plot and "ridership by lin: 1.6</title>" in plot  # name cut to 16

    # The privacy budget: ε per dataset it uses, and the plot of ε over time.
    page = api.get("/console/enterprise/budget")
    assert page.status_code == 200
    assert f'data-testid="spent-{ds["id"]}">1.6<' in page.text
    assert "<polyline" in page.text and i18n.t("zh-CN", "plot_epsilon") in page.text

    # Settlement statements and a disputed line, through the console.
    operator = login(api, creds, "operator-admin")
    now = datetime.now(UTC)
    period = {"period_start": (now - timedelta(days=1)).isoformat(), "period_end": now.isoformat()}
    r = api.post("/v1/market/settlements", headers=operator, json=period)
    assert r.status_code == 201, r.text
    statement = next(s for s in r.json()["statements"] if s["kind"] == "agreement")
    page = api.get("/console/enterprise/market")
    assert statement["id"] in page.text and aid in page.text
    page = api.get(f"/console/market/statements/{statement['id']}")
    assert 'data-testid="statement-gross">22.00 CNY' in page.text
    size = ledger_size(platform)
    r = api.post(
        f"/console/market/statements/{statement['id']}/disputes",
        data={"csrf": csrf, "line": "1", "reason": "两次计算中一次未返回结果"},
        follow_redirects=True,
    )
    assert "两次计算中一次未返回结果" in r.text
    assert [e["type"] for e in entries_since(platform, size) if e["actor"] == person] == [
        "market.dispute_opened"
    ]


def test_a_provider_lists_a_product_and_sees_the_precheck_but_not_anothers(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    prov = party(api, creds, "provider-transport", seed=1)
    ds = register(api, prov.headers, "ridership by line", "general-2", "conditional")
    csrf = console_login(api, creds, "provider-transport")
    person = creds["provider-transport"]["person"]["person_id"]
    page = api.get("/console/provider/market")
    assert page.status_code == 200 and ds["id"] in page.text

    form: dict[str, Any] = {
        "csrf": csrf, "title": "城市公交客流产品", "description": "按线路统计的客流",
        "domain": "transport", "keywords": "客流, 公交", "datasets": [ds["id"]],
        "rights_held": ["holding", "processing_use"], "rights_granted": ["processing_use"],
        "delivery_modes": ["computation"], "offer_delivery": "computation",
        "offer_operators": ["stats.count"], "offer_purposes": PURPOSE,
        "duration_days": "90", "max_computations": "5", "price_model": "per_computation",
        "price": "3.20",
    }  # fmt: skip
    # No CSRF token: refused, nothing created.
    no_token = {k: v for k, v in form.items() if k != "csrf"}
    assert api.post("/console/provider/market/products", data=no_token).status_code == 403
    listed = api.get("/v1/market/products", headers=prov.headers).json()
    assert listed["total"] == 0

    # Without provenance: a draft, whose listing the pre-check refuses, saying why.
    r = api.post("/console/provider/market/products", data=form, follow_redirects=False)
    assert r.status_code == 303 and "/console/provider/market/products/" in r.headers["location"]
    bare = r.headers["location"].rsplit("/", 1)[-1]
    before = decisions(platform, "market.list")
    r = api.post(
        f"/console/provider/market/products/{bare}/list", data={"csrf": csrf}, follow_redirects=True
    )
    assert decisions(platform, "market.list", at_least=before + 1) == before + 1
    assert i18n.t("zh-CN", "precheck_refused", reason="")[:6] in r.text
    assert "provenance" in r.text and 'data-testid="product-state">draft<' in r.text

    # With provenance and evidence: listed, the pre-check's decision shown.
    digest = "sha256:" + "ab" * 32
    form |= {"provenance_statement": "由市交通局票务系统依法采集的刷卡记录汇总而成。",
             "evidence_kind": "collection-notice", "evidence_reference": "交通局〔2026〕12号",
             "evidence_digest": digest}  # fmt: skip
    r = api.post("/console/provider/market/products", data=form, follow_redirects=False)
    pid = r.headers["location"].rsplit("/", 1)[-1]
    size = ledger_size(platform)
    r = api.post(
        f"/console/provider/market/products/{pid}/list", data={"csrf": csrf}, follow_redirects=True
    )
    product = api.get(f"/v1/market/products/{pid}", headers=prov.headers).json()
    assert product["state"] == "listed" and product["precheck"]["passed"] is True
    assert product["precheck"]["decision_id"] in r.text and 'data-testid="precheck"' in r.text
    mine = [e for e in entries_since(platform, size) if e["actor"] == person]
    assert [e["type"] for e in mine] == ["market.product_listed"]
    assert mine[0]["decision_id"] == product["precheck"]["decision_id"]
    page = api.get("/console/provider/market")
    assert (
        f'data-testid="product-{pid}"' in page.text and f'data-testid="product-{bare}"' in page.text
    )

    # Another provider: cannot open the draft, nor list it, nor see it in its products.
    api.cookies.clear()
    csrf_other = console_login(api, creds, "provider-health")
    assert api.get(f"/console/provider/market/products/{bare}").status_code == 404
    assert api.get(f"/console/provider/market/products/{pid}").status_code == 404
    size = ledger_size(platform)
    r = api.post(
        f"/console/provider/market/products/{bare}/list",
        data={"csrf": csrf_other},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert api.get(f"/v1/market/products/{bare}", headers=prov.headers).json()["state"] == "draft"
    assert [e for e in entries_since(platform, size) if e["object_id"] == bare] == []
    page = api.get("/console/provider/market")
    assert bare not in page.text and pid not in page.text
    # An enterprise reaches no provider market page.
    api.cookies.clear()
    csrf_ent = console_login(api, creds, "enterprise-fintech")
    assert api.get("/console/provider/market").status_code == 403
    r = api.post(f"/console/provider/market/products/{bare}/list", data={"csrf": csrf_ent})
    assert r.status_code == 403


def test_an_enterprise_sees_only_its_own_agreements_statements_and_budget(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    api = capi
    prov = party(api, creds, "provider-transport", seed=1)
    ent = party(api, creds, "enterprise-fintech", seed=2)
    rival = rival_enterprise(api, creds, "Rival Analytics Ltd", seed=3)
    ds = register(api, prov.headers, "ridership by line", "general-2", "conditional")
    product = list_product(api, prov, product_body([ds["id"]]))
    offer_id = product["offers"][0]["id"]
    theirs = negotiate(api, rival, prov, offer_id)
    ours = negotiate(api, ent, prov, offer_id)
    _ask(api, rival.headers, ds["id"], theirs["agreement_id"])
    _ask(api, rival.headers, ds["id"], theirs["agreement_id"])
    _ask(api, ent.headers, ds["id"], ours["agreement_id"])
    operator = login(api, creds, "operator-admin")
    now = datetime.now(UTC)
    period = {"period_start": (now - timedelta(days=1)).isoformat(), "period_end": now.isoformat()}
    settled = api.post("/v1/market/settlements", headers=operator, json=period).json()
    their_statements = [
        s["id"]
        for s in settled["statements"]
        if s["kind"] != "provider" and rival.org_id in json.dumps(s["statement"])
    ]
    assert len(their_statements) == 2  # the agreement's and the requester's
    csrf = console_login(api, creds, "enterprise-fintech")

    page = api.get("/console/enterprise/market")
    assert ours["agreement_id"] in page.text and ours["id"] in page.text
    for hidden in (theirs["agreement_id"], theirs["id"], *their_statements):
        assert hidden not in page.text
    assert api.get(f"/console/market/agreements/{theirs['agreement_id']}").status_code == 404
    assert api.get(f"/console/market/negotiations/{theirs['id']}").status_code == 404
    for statement_id in their_statements:
        assert api.get(f"/console/market/statements/{statement_id}").status_code == 404
    size = ledger_size(platform)
    api.post(
        f"/console/market/statements/{their_statements[0]}/disputes",
        data={"csrf": csrf, "line": "1", "reason": "not ours at all"},
    )
    r = api.post(
        f"/console/market/negotiations/{theirs['id']}/terminate",
        data={"csrf": csrf, "reason": "sabotage"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    person = creds["enterprise-fintech"]["person"]["person_id"]
    touched = {theirs["id"], *their_statements}
    # (The platform's own job entries may land meanwhile: none is by the person or on theirs.)
    assert [
        e
        for e in entries_since(platform, size)
        if e["actor"] == person or e["object_id"] in touched
    ] == []
    assert api.get("/v1/market/disputes", headers=rival.headers).json()["total"] == 0
    assert _state(api, rival.headers, theirs["id"]) == "finalized"

    # A dispute the rival opens is listed for it and the provider, never for this enterprise.
    r = api.post(
        f"/v1/market/statements/{their_statements[0]}/disputes",
        headers=rival.headers,
        json={"line": 1, "reason": "rival's own dispute"},
    )
    assert r.status_code == 201, r.text
    assert api.get("/v1/market/disputes", headers=rival.headers).json()["total"] == 1
    assert api.get("/v1/market/disputes", headers=prov.headers).json()["total"] == 1
    assert api.get("/v1/market/disputes", headers=ent.headers).json()["total"] == 0
    assert api.get(f"/console/market/statements/{their_statements[0]}").status_code == 404

    # The budget: its own ε on the shared lineage (0.8), not the rival's 1.6 nor the total.
    page = api.get("/console/enterprise/budget")
    assert f'data-testid="spent-{ds["id"]}">0.8<' in page.text
    assert "Rival Analytics" not in page.text and rival.org_id not in page.text
    assert ">2.4<" not in page.text and ">1.6<" not in page.text


def test_the_market_views_offer_only_the_next_steps_and_carry_only_the_partys_signature() -> None:
    n = {"state": "offered", "requester_org": "E", "provider_org": "P"}
    assert mv.my_steps(n, mv.side_of(n, "E")) == ("accept", "request", "terminate")
    assert mv.my_steps(n, mv.side_of(n, "P")) == ("terminate",)
    assert mv.my_steps(n, mv.side_of(n, "X")) == ()
    assert mv.my_steps({**n, "state": "finalized"}, "consumer") == ()
    sdk = json.dumps({"key_id": "sha256:k", "signature": "c2ln"})
    assert mv.parse_signature("", sdk, None) == {"key_id": "sha256:k", "signature": "c2ln"}
    assert mv.parse_signature("sha256:f", " c2ln ", None) == {
        "key_id": "sha256:f",
        "signature": "c2ln",
    }
    for bad in ("", '{"key_id": "k"}', "{not json"):
        try:
            mv.parse_signature("sha256:f", bad, None)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert mv.parse_terms('{"price": "9.00"}') == {"price": "9.00"}
    for bad in ("{bad", "[1]"):
        try:
            mv.parse_terms(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    keys = i18n.keys()  # keys the templates build, t(("step_" ~ step)): the catalogue has each
    dynamic = {
        "step_": mv.STEPS,
        "side_": ("consumer", "provider"),
        "meter_": ("computations", "rows", "epsilon"),
        "delivery_": ("computation", "download"),
        "right_": ("holding", "processing_use", "product_operation"),
    }
    for prefix, words in dynamic.items():
        assert {prefix + w for w in words} <= keys


def test_a_statement_view_names_the_columns_of_its_lines_after_the_line_number() -> None:
    lines = [{"line": 1, "units": 2, "amount": "3.00"}, {"line": 2, "amount": "1.00", "fee": "0"}]
    view = mv.statement_view({"id": "s", "statement": {"lines": lines}}, [])
    assert view["columns"] == ["amount", "fee", "units"] and view["body"]["lines"] == lines
    assert mv.statement_view({"id": "s", "statement": None}, [])["columns"] == []


def test_a_negotiation_view_compares_the_terms_with_the_offer_it_started_from() -> None:
    n = {"state": "offered", "requester_org": "E", "provider_org": "P", "offer_id": "o2"}
    n["terms"] = {"price": "8.00", "days": 30}
    offers = [{"id": "o1", "terms": {}}, {"id": "o2", "terms": {"price": "9.00", "days": 30}}]
    view = mv.negotiation_view(n, "E", {"offers": offers}, {"keys": [{"key_id": "k"}]})
    assert view["side"] == "consumer" and view["steps"] == ("accept", "request", "terminate")
    assert view["changes"] == [("price", "9.00", "8.00")] and view["keys"] == [{"key_id": "k"}]
    assert (
        view["terms_json"]
        == mv.pretty(n["terms"])
        == json.dumps(n["terms"], indent=2, sort_keys=True)
    )
    bare = mv.negotiation_view(n, "X", None, None)
    assert (bare["side"], bare["steps"], bare["changes"], bare["keys"]) == (None, (), [], [])
