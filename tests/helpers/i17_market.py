"""Market test helpers: verified parties with their own keys, products, a negotiation run."""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

import crypto
from tests.helpers.api import login

_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code(seed: int) -> str:
    """A well-formed unified social credit code (GB 32100-2015 check character)."""
    rng = random.Random(seed)
    body = "91" + "".join(rng.choice(_CODE_CHARS) for _ in range(15))
    total = sum(_CODE_CHARS.index(c) * w for c, w in zip(body, _WEIGHTS, strict=True))
    return body + _CODE_CHARS[(31 - total % 31) % 31]


@dataclass
class Party:
    """An organisation's client headers and the signing key it holds (never sent)."""

    org_id: str
    headers: dict[str, str]
    key: crypto.SigningKeyPair
    key_id: str

    def sign(self, digest: str) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "signature": base64.b64encode(self.key.sign(digest.encode())).decode(),
        }


def verify_org(api: TestClient, creds: dict[str, Any], org_id: str, seed: int) -> None:
    operator = login(api, creds, "operator-admin")
    r = api.post(
        f"/v1/market/parties/{org_id}/verify",
        headers=operator,
        json={"credit_code": credit_code(seed)},
    )
    assert r.status_code == 200, r.text


def party(
    api: TestClient,
    creds: dict[str, Any],
    client: str,
    *,
    algorithm: str = "ed25519",
    verified: bool = True,
    seed: int = 1,
) -> Party:
    """A demo client as a market party: its key pair made here, only the public half sent."""
    org_id = creds[client]["org_id"]
    headers = login(api, creds, client)
    if verified:
        verify_org(api, creds, org_id, seed)
    key = crypto.generate_key_pair(algorithm)
    r = api.post(
        f"/v1/market/parties/{org_id}/keys",
        headers=headers,
        json={"algorithm": algorithm, "public_key": base64.b64encode(key.public_bytes()).decode()},
    )
    assert r.status_code == 201, r.text
    return Party(org_id, headers, key, r.json()["keys"][-1]["id"])


def offer(**overrides: Any) -> dict[str, Any]:
    terms: dict[str, Any] = {
        "delivery": "computation",
        "operators": ["stats.count", "stats.mean"],
        "purposes": ["客流分析研究"],
        "duration_days": 90,
        "max_computations": 2,
        "price_model": "per_computation",
        "price": "12.50",
    }
    terms.update(overrides)
    return terms


def product_body(datasets: list[str], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "城市公共交通客流统计数据产品",
        "description": "按线路和时段统计的地铁与公交客流数据，仅以隐私计算方式提供。",
        "domain": "transport",
        "keywords": ["客流", "公共交通"],
        "datasets": datasets,
        "provenance": {
            "statement": "由市交通局票务系统依法采集的刷卡记录汇总而成。",
            "evidence": [
                {
                    "kind": "collection-notice",
                    "reference": "交通局〔2026〕12号",
                    "digest": "sha256:" + hashlib.sha256("交通局〔2026〕12号".encode()).hexdigest(),
                }
            ],
        },
        "rights": {"held": ["holding", "processing_use"], "granted": ["processing_use"]},
        "delivery_modes": ["computation"],
        "offers": [offer()],
    }
    body.update(overrides)
    return body


def list_product(api: TestClient, provider: Party, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/v1/market/products", headers=provider.headers, json=body)
    assert r.status_code == 201, r.text
    r = api.post(f"/v1/market/products/{r.json()['id']}/list", headers=provider.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def negotiate(
    api: TestClient,
    requester: Party,
    provider: Party,
    offer_id: str,
    *,
    purpose: str = "客流分析研究",
    dua_reference: str = "DUA-2026-017",
    counter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Request → (offer ⇄ counter) → accept → agree → verify → finalize; the negotiation."""
    body: dict[str, Any] = {
        "offer_id": offer_id,
        "purpose": purpose,
        "dua_reference": dua_reference,
    }
    r = api.post("/v1/market/negotiations", headers=requester.headers, json=body)
    assert r.status_code == 201, r.text
    nid = r.json()["id"]
    terms = counter or r.json()["terms"]
    steps: list[tuple[str, Party, dict[str, Any] | None]] = [
        ("offer", provider, {"terms": terms}),
        ("accept", requester, None),
    ]
    for name, who, payload in steps:
        r = api.post(f"/v1/market/negotiations/{nid}/{name}", headers=who.headers, json=payload)
        assert r.status_code == 200, r.text
    digest = r.json()["agreement_digest"]
    for name, who, payload in (
        ("agree", provider, provider.sign(digest)),
        ("verify", requester, requester.sign(digest)),
        ("finalize", provider, None),
    ):
        r = api.post(f"/v1/market/negotiations/{nid}/{name}", headers=who.headers, json=payload)
        assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out
