"""`pdx demo`, the market part: list a product, negotiate with a counter-offer, compute, settle.

Over HTTP against a live server, like the rest of the demo. The parties' signing keys are
made here, on the client side; only their public halves are sent to the platform.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

import crypto
from exchange.market.certificates import CertificateInvalid, verify_certificate
from exchange.market.parties import credit_code_valid

PURPOSE = "公共交通客流分析"
_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


class MarketDemoError(Exception):
    """The market demo could not go on; the message says which step and why."""


def _ok(r: httpx.Response, what: str, status: int = 200) -> dict[str, Any]:
    if r.status_code != status:
        raise MarketDemoError(f"{what}: {r.status_code} {r.text[:300]}")
    out: dict[str, Any] = r.json()
    return out


def _credit_code(rng: random.Random) -> str:
    while True:
        code = "91" + "".join(rng.choice(_CODE_CHARS) for _ in range(16))
        if credit_code_valid(code):
            return code


def _login(client: httpx.Client, creds: dict[str, Any], name: str) -> dict[str, str]:
    c = creds[name]
    r = client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": c["client_id"],
              "client_secret": c["client_secret"]},
    )  # fmt: skip
    return {"Authorization": f"Bearer {_ok(r, f'login as {name}')['access_token']}"}


def _stops_csv(rows: int) -> str:
    rng = random.Random(17)
    lines = ["stop_id,district,boardings,alightings"]
    for i in range(rows):
        lines.append(
            f"S{i:04d},{rng.choice('ABCDE')},{rng.randrange(50, 900)},{rng.randrange(50, 900)}"
        )
    return "\n".join(lines) + "\n"


def _digest(document: str) -> str:
    """The evidence document's digest (here the catalogue entry's text stands for it)."""
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def run_market_demo(client: httpx.Client, creds: dict[str, Any]) -> dict[str, Any]:
    """Run the market scenario; returns the ids it created."""
    rng = random.Random()
    operator = _login(client, creds, "operator-admin")
    prov = _login(client, creds, "provider-transport")
    ent = _login(client, creds, "enterprise-fintech")
    keys: dict[str, tuple[crypto.SigningKeyPair, str]] = {}
    print("\n[m1] The operator verifies both parties' identities; each registers its own key")
    for name, headers, algorithm in (("provider-transport", prov, "ed25519"),
                                     ("enterprise-fintech", ent, "sm2-sm3")):  # fmt: skip
        org = creds[name]["org_id"]
        _ok(client.post(f"/v1/market/parties/{org}/verify", headers=operator,
                        json={"credit_code": _credit_code(rng)}), "verify party")  # fmt: skip
        pair = crypto.generate_key_pair(algorithm)
        party = _ok(client.post(f"/v1/market/parties/{org}/keys", headers=headers,
                                json={"algorithm": algorithm,
                                      "public_key": base64.b64encode(pair.public_bytes()).decode()}),  # noqa: E501
                    "register key", 201)  # fmt: skip
        keys[org] = (pair, party["keys"][-1]["id"])
        print(
            f"    {name}: verified, {algorithm} key {party['keys'][-1]['id'][:23]}… (private half kept here)"  # noqa: E501
        )  # noqa: E501
    print("\n[m2] The provider registers open stop counts and packages them as a product")
    meta = {
        "name": f"stop boardings {int(time.time())}", "classification_path": ["transport", "stops", "counts"],  # noqa: E501
        "level": "general-1", "impact_object": "public-interest", "impact_degree": "general",
        "source_agency": "Municipal Transport Bureau", "accountable_department": "Ticketing office",
        "pi": False, "sensitive_pi": False, "share_attribute": "unconditional", "open_attribute": "open",  # noqa: E501
    }  # fmt: skip
    files: dict[str, tuple[str | None, bytes | str, str]] = {
             "metadata": (None, json.dumps(meta), "application/json"),
             "file": ("stops.csv", _stops_csv(300).encode(), "text/csv")}  # fmt: skip
    ds = _ok(client.post("/v1/datasets", headers=prov, files=files), "register dataset", 201)
    product = _ok(client.post("/v1/market/products", headers=prov, json={
        "title": "公交站点客流统计", "description": "全市公交站点上下客人次，开放数据，隐私计算或下载。",  # noqa: E501
        "domain": "transport", "keywords": ["客流", "公交站点"], "datasets": [ds["id"]],
        "provenance": {"statement": "由票务系统刷卡记录按站点汇总，不含个人信息。",
                       "evidence": [{"kind": "open-data-catalogue", "reference": "开放目录 2026-117",  # noqa: E501
                                     "digest": _digest("开放目录 2026-117")}]},
        "rights": {"held": ["holding", "processing_use", "product_operation"],
                   "granted": ["processing_use"]},
        "delivery_modes": ["computation"],
        "offers": [{"operators": ["stats.count", "stats.mean"], "purposes": [PURPOSE],
                    "duration_days": 30, "max_computations": 5, "price_model": "per_computation",
                    "price": "0.50"}],
    }), "create product", 201)  # fmt: skip
    listed = _ok(client.post(f"/v1/market/products/{product['id']}/list", headers=prov), "list")
    print(
        f"    listed after the compliance pre-check (decision {listed['precheck']['decision_id']})"
    )
    page = _ok(client.get("/v1/catalog", params={"q": "客流"}, headers=ent), "catalog")
    print(f"    the catalog finds {page['total']} product(s) for 客流, e.g. {page['items'][0]['title']} "  # noqa: E501
          f"by {page['items'][0]['provider_name']}")  # fmt: skip

    print("\n[m3] Negotiation (DSP): request with a counter-offer, offer, accept, sign, finalize")
    terms = {**listed["offers"][0]["terms"], "price": "0.40"}
    neg = _ok(client.post("/v1/market/negotiations", headers=ent, json={
        "offer_id": listed["offers"][0]["id"], "purpose": PURPOSE, "terms": terms}),
        "request", 201)  # fmt: skip
    url = f"/v1/market/negotiations/{neg['id']}"
    _ok(
        client.post(f"{url}/offer", headers=prov, json={"terms": {**terms, "price": "0.45"}}),
        "offer",
    )
    accepted = _ok(client.post(f"{url}/accept", headers=ent), "accept")
    digest = accepted["agreement_digest"]

    def sign(org: str) -> dict[str, str]:
        pair, key_id = keys[org]
        return {
            "key_id": key_id,
            "signature": base64.b64encode(pair.sign(digest.encode())).decode(),
        }

    _ok(
        client.post(f"{url}/agree", headers=prov, json=sign(creds["provider-transport"]["org_id"])),
        "agree",
    )
    _ok(
        client.post(f"{url}/verify", headers=ent, json=sign(creds["enterprise-fintech"]["org_id"])),
        "verify",
    )
    final = _ok(client.post(f"{url}/finalize", headers=prov), "finalize")
    print("    " + " → ".join(t["state"] for t in final["transitions"]))
    agreement_id = final["agreement_id"]

    print("\n[m4] Metered computations under the agreement")
    started = datetime.now(UTC) - timedelta(seconds=1)
    for operator_name, params in (("stats.count", {}), ("stats.mean", {"columns": ["boardings"]})):
        comp = _ok(client.post("/v1/computations", headers=ent, json={
            "operator": operator_name, "inputs": [ds["id"]], "params": params,
            "purpose": PURPOSE, "agreement_id": agreement_id}), "compute", 201)  # fmt: skip
        print(f"    {operator_name}: {comp['state']} (metered)")
    used = _ok(client.get(f"/v1/market/agreements/{agreement_id}", headers=ent), "agreement")[
        "used"
    ]
    print(f"    agreement used: {used}")

    print("\n[m5] Settlement: signed statements on the ledger")
    run = _ok(client.post("/v1/market/settlements", headers=operator, json={
        "period_start": started.isoformat(), "period_end": datetime.now(UTC).isoformat()}),
        "settle", 201)  # fmt: skip
    for st in run["statements"]:
        s = st["statement"]
        print(
            f"    {st['kind']:>9}: gross/total {s.get('gross') or s.get('total')} CNY, ledger #{st['ledger_index']}"  # noqa: E501
        )  # noqa: E501

    print("\n[m6] A data-asset registration certificate, verified offline")
    cert = _ok(client.post(f"/v1/market/products/{product['id']}/certificate", headers=prov),
               "certificate", 201)  # fmt: skip
    key = client.get("/v1/ledger/verifier-key").text.strip()
    bundle: dict[str, Any] = {}
    for _ in range(60):
        bundle = _ok(
            client.get(f"/v1/market/certificates/{cert['certificate']['id']}", headers=prov),
            "get certificate",
        )  # noqa: E501
        if bundle["proof"]:
            break
        time.sleep(0.5)  # waiting for the sealer to seal the entry
    try:
        for step in verify_certificate(bundle, key):
            print(f"    ok {step}")
    except CertificateInvalid as exc:
        raise MarketDemoError(f"certificate: {exc}") from None
    return {
        "product": product["id"],
        "agreement": agreement_id,
        "certificate": cert["certificate"]["id"],
    }
