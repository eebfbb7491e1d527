"""The market through the SDK against the real app (SQLite and PostgreSQL): issue 17, item 6.

List with provenance, search in Chinese across cursor pages, negotiate with a
counter-offer, sign with keys held by the SDK, compute under the agreement, read the
meter, settle, dispute a line, verify the certificate offline; refusals arrive as
`PdxError`s carrying the server's problem `type`.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from exchange.market.certificates import verify_certificate as server_verify
from gateway.platform import Platform
from tests.helpers.i15_sdk import demo, new_client, sdk_login
from tests.helpers.i17_market import credit_code, list_product, party, product_body
from tests.test_api_contracts import measure_csv
from tests.test_market_flow import ledger_types, register

from pdx_client import (  # isort: skip
    ApiError,
    Auditor,
    Enterprise,
    Operator,
    PartyKey,
    PdxError,
    Provider,
    VerificationError,
)
from pdx_client.canonical import canonical_json, digest_of  # isort: skip

PURPOSE = "客流分析研究"


def dataset_meta(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "classification_path": ["transport", "ridership", "counts"],
        "level": "general-2",
        "impact_object": "public-interest",
        "impact_degree": "general",
        "source_agency": "Municipal Transport Bureau",
        "accountable_department": "Ticketing office",
        "pi": False,
        "sensitive_pi": False,
        "share_attribute": "conditional",
        "open_attribute": "conditional",
    }


def create(provider: Provider, body: dict[str, Any]) -> Any:
    return provider.create_product(
        body["title"], body["description"], domain=body["domain"], datasets=body["datasets"],
        offers=body["offers"], rights=body["rights"], provenance=body["provenance"],
        delivery_modes=body["delivery_modes"], keywords=body["keywords"],
    )  # fmt: skip


def test_canonical_json_is_the_ledgers() -> None:
    """The SDK's digests are the platform's: RFC 8785 on what the market signs."""
    from ledger import canonical_json as ledger_canonical

    doc = {
        "b": [1, 2.5, 1e21, 1e-7, -0.0, 0.1, 123456789012345, None, True],
        "a": {"z": '客流\n"\\\u0001', "é": 1, "\U0001f600": 2, "\ue000": 3},
        "pdx:price": "10.50",
    }
    assert canonical_json(doc) == ledger_canonical(doc)
    from exchange.market._common import digest_of as server_digest

    assert digest_of(doc) == server_digest(doc)


def test_the_whole_market_through_the_sdk(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    operator = demo(capi, creds, Operator, "operator-admin")
    prov = demo(capi, creds, Provider, "provider-transport")
    ent = demo(capi, creds, Enterprise, "enterprise-fintech")
    auditor = demo(capi, creds, Auditor, "auditor")
    prov_org, ent_org = prov.me().org_id, ent.me().org_id

    # Parties: verified by the operator; each registers the public half of its own key.
    for seed, org in enumerate((prov_org, ent_org), start=1):
        assert operator.verify_party(org, credit_code(seed)).verified
    prov_key, ent_key = PartyKey.generate(), PartyKey.generate()
    prov.use_key(prov_key)
    party = ent.register_key(ent_key)
    ent.party_key = ent_key
    assert party.verified and party.holds(ent_key.key_id)
    assert ent.party(prov_org).holds(prov_key.key_id)  # the other side's public key

    # Products: refused without provenance (the pre-check), listed with it.
    ds = prov.register(dataset_meta("ridership by line"), measure_csv(7, 40))
    draft = create(prov, product_body([ds.id], provenance=None))
    with pytest.raises(ApiError) as refused:
        prov.list_product(draft.id)
    assert refused.value.status == 403 and "provenance" in refused.value.detail
    assert prov.product(draft.id).state == "draft"
    body = product_body([ds.id])
    product = prov.list_product(create(prov, body).id)
    assert product.state == "listed" and product.precheck and product.precheck["passed"]
    assert product.provenance and product.provenance["evidence"][0]["reference"]
    assert ledger_types(platform, product.id) == [
        "market.product_created", "market.product_listed"
    ]  # fmt: skip
    second = prov.list_product(
        create(prov, {**body, "title": "轨道交通换乘客流统计", "keywords": ["客流", "换乘"]}).id
    )

    # The catalog: Chinese words, provider names, every cursor page followed.
    found = ent.catalog("客流", operator="stats.count", page_size=1)
    assert found.total == 2 and {i.id for i in found.items} == {product.id, second.id}
    assert {i.provider_name for i in found.items} == {"Municipal Transport Bureau"}
    assert ent.catalog("换乘").total == 1 and ent.catalog("医院").total == 0
    assert len(ent.catalog("客流", page_size=1, max_items=1).items) == 1

    # A party nobody verified cannot ask.
    _, cid, secret = new_client(capi, creds, "Unverified Analytics", "enterprise")
    stranger = sdk_login(capi, Enterprise, cid, secret)
    offer = product.offers[0]
    with pytest.raises(PdxError) as unverified:
        stranger.request_offer(offer.id, PURPOSE, dua_reference="DUA-1")
    assert unverified.value.code == "party-not-verified" and unverified.value.status == 403

    # Either party ends a negotiation; nothing happens on it afterwards.
    ended = ent.request_offer(offer.id, PURPOSE, dua_reference="DUA-2026-017")
    assert prov.terminate_negotiation(ended.id, "价格未谈妥").state == "terminated"
    with pytest.raises(ApiError) as late:
        ent.accept(ended.id)
    assert late.value.status == 409

    # Negotiate with counter-offers: request at 10.00, offered 11.00, countered 10.50.
    terms = offer.terms
    n = ent.request_offer(
        offer.id, PURPOSE, dua_reference="DUA-2026-017", terms={**terms, "price": "10.00"}
    )
    assert prov.offer(n.id, {**terms, "price": "11.00"}).state == "offered"
    assert ent.counter_offer(n.id, {**terms, "price": "10.50"}).state == "requested"
    assert prov.offer(n.id).terms["price"] == "10.50"  # the requested terms, offered
    accepted = ent.accept(n.id)
    assert accepted.agreement_digest == digest_of(accepted.agreement_document)
    # A signature with a key the provider never registered is refused by the server.
    prov.party_key = PartyKey.generate()
    with pytest.raises(ApiError) as unregistered:
        prov.agree(n.id)
    assert unregistered.value.code == "invalid-input" and unregistered.value.status == 422
    assert ent.negotiation(n.id).state == "accepted"
    prov.party_key = prov_key
    with pytest.raises(PdxError) as early:  # the SDK checks the state before it signs
        ent.verify_negotiation(n.id)
    assert early.value.code == "negotiation-wrong-state"
    assert prov.agree(n.id).state == "agreed"
    assert ent.verify_negotiation(n.id).state == "verified"
    final = prov.finalize(n.id)
    assert final.states == [
        "requested", "offered", "requested", "offered", "accepted", "agreed", "verified",
        "finalized",
    ]  # fmt: skip
    aid = final.agreement_id
    assert aid is not None
    agreement = ent.market_agreement(aid)
    assert agreement.in_force and agreement.terms["price"] == "10.50"
    # Both signatures verify here with the public keys alone; the auditor reads it too.
    checks = auditor.check_agreement(auditor.market_agreement(aid))
    assert any(prov_key.key_id in c for c in checks) and any(ent_key.key_id in c for c in checks)
    assert agreement.signatures["provider"]["key_id"] == prov_key.key_id
    assert agreement.signatures["consumer"]["key_id"] == ent_key.key_id

    # A metered computation through the SDK, under the agreement; the meter reads it.
    result = ent.compute_under(aid, "stats.count", {}, approvers=[prov], timeout=300)
    assert result.output
    usage = ent.usage(aid)
    assert (usage.computations, usage.rows, usage.computations_left) == (1, 40, 1)
    assert usage.price == Decimal("10.50") and usage.price_model == "per_computation"
    with pytest.raises(ApiError) as outside:
        ent.request("stats.variance", [ds.id], {"columns": ["age"], "clip": [0, 120]}, PURPOSE,
                    agreement_id=aid)  # fmt: skip
    assert outside.value.code == "outside-agreement"
    ent.request("stats.count", [ds.id], {}, PURPOSE, agreement_id=aid)
    with pytest.raises(ApiError) as exhausted:
        ent.request("stats.count", [ds.id], {}, PURPOSE, agreement_id=aid)
    assert exhausted.value.code == "agreement-exhausted"
    assert prov.usage(aid).computations_left == 0

    # Settlement: signed statements that reconcile to the cent; a disputed line.
    now = datetime.now(UTC)
    with pytest.raises(ApiError) as not_operator:
        Operator(ent.session).settle(now - timedelta(days=1), now)
    assert not_operator.value.status == 403
    settled = operator.settle(now - timedelta(days=1), now)
    by_kind = {s.kind: s for s in settled.statements}
    assert by_kind["agreement"].amount == Decimal("21.00")
    assert by_kind["requester"].amount == by_kind["agreement"].amount
    assert by_kind["agreement"].statement["fee"] == "1.05"
    mine = ent.statements()
    assert {s.kind for s in mine} == {"agreement", "requester"}
    assert {s.kind for s in prov.statements(settled.settlement_id)} == {"agreement", "provider"}
    assert len(auditor.statements(settled.settlement_id)) == 3
    line = by_kind["agreement"].lines[0]
    assert Decimal(line["amount"]) == Decimal("21.00") and line["computations"] == 2
    dispute = ent.open_dispute(by_kind["agreement"].id, 1, "两次计算中一次未返回结果")
    assert dispute.disputed["computations"] == 2 and dispute.state == "open"
    assert ledger_types(platform, dispute.id) == ["market.dispute_opened"]
    with pytest.raises(ApiError) as no_line:
        ent.open_dispute(by_kind["agreement"].id, 9, "no such line")
    assert no_line.value.code == "invalid-input"
    other = demo(capi, creds, Enterprise, "provider-health")
    with pytest.raises(ApiError) as not_party:
        other.open_dispute(by_kind["agreement"].id, 1, "not mine")
    assert not_party.value.status == 404

    # The certificate, fetched and verified offline by the SDK alone.
    issued = prov.issue_certificate(product.id)
    assert issued.proof is None
    platform.sealer.seal_now()
    cert = ent.certificate(issued.id)
    key = ent.trail.verifier_key()
    steps = ent.verify_certificate(cert, key)
    bundle = cert.model_dump(mode="json")
    assert steps == server_verify(bundle, key)  # the same five steps as the server's verb
    assert [s[:3] for s in steps] == ["(1)", "(2)", "(3)", "(4)", "(5)"]

    def refused_at(change: Any) -> str:
        doc = copy.deepcopy(bundle)
        change(doc)
        with pytest.raises(VerificationError) as bad:
            ent.verify_certificate(doc, key)
        assert bad.value.type == "https://pdx.dev/problems/certificate-invalid"
        return bad.value.detail

    def other_digest(d: dict[str, Any]) -> None:
        d["certificate"]["datasets"][0]["digest"] = "sha256:" + "0" * 64

    def resigned(d: dict[str, Any]) -> None:
        d["certificate"]["rights"]["granted"] = ["product_operation"]
        d["digest"] = digest_of(d["certificate"])

    def other_index(d: dict[str, Any]) -> None:
        d["proof"]["index"] = max(0, d["proof"]["index"] - 1)

    def other_path(d: dict[str, Any]) -> None:
        d["proof"]["inclusion"] = [*reversed(d["proof"]["inclusion"]), d["proof"]["inclusion"][0]]

    assert refused_at(other_digest).startswith("(1)")
    assert refused_at(resigned).startswith("(2)")
    assert "step 4" in refused_at(other_index)
    assert "step 4" in refused_at(other_path)
    forged = key.split("+")
    forged[0] = "another.example/log"
    with pytest.raises(VerificationError):
        ent.verify_certificate(bundle, "+".join(forged))
    json.dumps(bundle)  # the bundle is plain JSON, as saved for offline checks


class _RewritesAgreements(httpx.BaseTransport):
    """A party's path to the server through someone who rewrites the agreement it reads."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "GET" or "/v1/market/negotiations/" not in request.url.path:
            return response
        response.read()
        body = json.loads(response.content)
        if body.get("agreement_document"):
            body["agreement_document"]["pdx:purpose"] = "营销推广"  # another purpose, same digest
        return httpx.Response(response.status_code, json=body)


def test_the_sdk_signs_only_a_document_whose_digest_it_recomputed(
    api: TestClient, creds: dict[str, Any]
) -> None:
    prov = party(api, creds, "provider-transport")
    ent = party(api, creds, "enterprise-fintech", seed=2)
    ds = register(api, prov.headers, "ridership by line", "general-2", "conditional")
    product = list_product(api, prov, product_body([ds["id"]]))
    r = api.post(
        "/v1/market/negotiations",
        headers=ent.headers,
        json={"offer_id": product["offers"][0]["id"], "purpose": PURPOSE, "dua_reference": "D-1"},
    )
    nid = r.json()["id"]
    r = api.post(f"/v1/market/negotiations/{nid}/offer", headers=prov.headers,
                 json={"terms": r.json()["terms"]})  # fmt: skip
    assert api.post(f"/v1/market/negotiations/{nid}/accept", headers=ent.headers).status_code == 200
    c = creds["provider-transport"]
    key = PartyKey.generate()
    with Provider.login(
        "http://testserver", c["client_id"], c["client_secret"],
        transport=_RewritesAgreements(api._transport),
    ) as fooled:  # fmt: skip
        fooled.use_key(key)
        with pytest.raises(VerificationError) as refused:
            fooled.agree(nid)
        assert refused.value.code == "agreement-invalid"
    # Nothing was signed or sent: the negotiation still waits for the provider's signature.
    n = api.get(f"/v1/market/negotiations/{nid}", headers=prov.headers).json()
    assert n["state"] == "accepted" and n["signatures"] == {}
    honest = sdk_login(api, Provider, c["client_id"], c["client_secret"])
    honest.use_key(key, register=False)
    signed = honest.agree(nid)
    assert signed.state == "agreed" and signed.signatures["provider"]["key_id"] == key.key_id
