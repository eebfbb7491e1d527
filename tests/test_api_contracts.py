"""Contracts through the API: propose, sign, read, terminate; each transition on the ledger.

Also the helpers the computation tests share: organisations made through the API, datasets.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.platform import Platform
from ledger.records import decode_leaf
from tests.conftest import login
from tests.helpers.api import assert_problem
from tests.helpers.i11_people import onboard_first_admin


def make_org(
    api: TestClient, creds: dict[str, Any], name: str, kind: str
) -> tuple[str, dict[str, str]]:
    """A new organisation (operator) and a logged-in client of it (made by its first admin)."""
    admin = login(api, creds, "operator-admin")
    r = api.post("/v1/organisations", headers=admin, json={"name": name, "kind": kind})
    assert r.status_code == 201, r.text
    org_id = r.json()["id"]
    role = {"provider": "data-provider", "enterprise": "data-consumer"}[kind]
    person = onboard_first_admin(api, admin, org_id, f"admin-{org_id[:8]}")  # issue 11
    r = api.post(
        f"/v1/organisations/{org_id}/clients",
        headers=person,
        json={"name": f"{name} client", "roles": [role]},
    )
    assert r.status_code == 201, r.text
    c = r.json()
    r = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )
    assert r.status_code == 200, r.text
    return org_id, {"Authorization": f"Bearer {r.json()['access_token']}"}


def measure_csv(seed: int, rows: int) -> str:
    """A hospital's readings: blood pressure, age, a ward and a readmission label."""
    rng = random.Random(seed)
    lines = ["patient_ref,ward,systolic_bp,age,readmitted"]
    for i in range(rows):
        age = rng.randrange(20, 90)
        bp = round(rng.gauss(110 + age * 0.4, 12), 1)
        risk = (bp - 130) / 15 + (age - 55) / 20 + rng.gauss(0, 0.7)
        lines.append(f"R{seed:02d}{i:05d},{rng.choice('ABC')},{bp},{age},{int(risk > 0)}")
    return "\n".join(lines) + "\n"


def dataset_metadata(name: str, level: str, open_attribute: str = "conditional") -> str:
    return json.dumps(
        {
            "name": name,
            "classification_path": ["health", "hospital care", "ward readings"],
            "level": level,
            "impact_object": "public-interest",
            "impact_degree": "general",
            "source_agency": "District hospital",
            "accountable_department": "Medical records office",
            "pi": False,
            "sensitive_pi": False,
            "share_attribute": "conditional",
            "open_attribute": open_attribute,
        }
    )


def register_dataset(
    api: TestClient,
    headers: dict[str, str],
    text: str,
    name: str,
    level: str,
    *,
    path: str = "/v1/datasets",
    open_attribute: str = "conditional",
) -> dict[str, Any]:
    files = {
        "metadata": (None, dataset_metadata(name, level, open_attribute), "application/json"),
        "file": ("data.csv", text.encode(), "text/csv"),
    }
    r = api.post(path, headers=headers, files=files)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def active_contract(
    api: TestClient,
    consumer: dict[str, str],
    provider: dict[str, str],
    provider_org: str,
    datasets: list[str],
    purpose: str,
    **extra: Any,
) -> dict[str, Any]:
    body = {"provider_org": provider_org, "datasets": datasets, "purpose": purpose, **extra}
    body.setdefault("agreement_id", "DUA-2026-001")
    r = api.post("/v1/contracts", headers=consumer, json=body)
    assert r.status_code == 201, r.text
    r = api.post(f"/v1/contracts/{r.json()['id']}/sign", headers=provider)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


# -- tests ----------------------------------------------------------------------------------------


@pytest.fixture
def parties(capi: TestClient, creds: dict[str, Any]) -> dict[str, Any]:
    prov_org, prov = make_org(capi, creds, "Eastside District Hospital", "provider")
    ent_org, ent = make_org(capi, creds, "Riverside Health Analytics", "enterprise")
    ds = register_dataset(capi, prov, measure_csv(1, 40), "ward readings", "general-2")
    return {"prov_org": prov_org, "prov": prov, "ent_org": ent_org, "ent": ent, "ds": ds}


def test_contract_lifecycle_is_on_the_ledger(
    capi: TestClient, parties: dict[str, Any], platform: Platform, creds: dict[str, Any]
) -> None:
    p = parties
    body = {
        "provider_org": p["prov_org"],
        "datasets": [p["ds"]["id"]],
        "purpose": "readmission risk research",
        "agreement_id": "DUA-7",
    }
    r = capi.post("/v1/contracts", headers=p["ent"], json=body)
    assert r.status_code == 201, r.text
    proposed = r.json()
    assert proposed["status"] == "proposed" and proposed["in_force"] is False
    assert proposed["consumer_org"] == p["ent_org"]
    cid = proposed["id"]
    # The consumer cannot sign its own proposal; the provider can.
    assert_problem(capi.post(f"/v1/contracts/{cid}/sign", headers=p["ent"]), 403)
    r = capi.post(f"/v1/contracts/{cid}/sign", headers=p["prov"])
    assert r.status_code == 200, r.text
    signed = r.json()
    assert signed["status"] == "active" and signed["in_force"] is True
    assert_problem(capi.post(f"/v1/contracts/{cid}/sign", headers=p["prov"]), 409, "conflict")
    # Both parties see it; an auditor too; another enterprise does not.
    for who in (p["ent"], p["prov"], login(capi, creds, "auditor")):
        assert capi.get(f"/v1/contracts/{cid}", headers=who).json()["status"] == "active"
    assert [c["id"] for c in capi.get("/v1/contracts", headers=p["prov"]).json()["items"]] == [cid]
    outsider = login(capi, creds, "enterprise-fintech")
    assert_problem(capi.get(f"/v1/contracts/{cid}", headers=outsider), 403)
    assert capi.get("/v1/contracts", headers=outsider).json()["items"] == []
    r = capi.post(f"/v1/contracts/{cid}/terminate", headers=p["prov"], json={"reason": "ended"})
    assert r.status_code == 200, r.text
    ended = r.json()
    assert ended["status"] == "terminated" and ended["termination_reason"] == "ended"
    # Every transition has its ledger entry, in order, naming the contract.
    states = [t["state"] for t in ended["transitions"]]
    assert states == ["proposed", "active", "terminated"]
    indexes = [t["ledger_index"] for t in ended["transitions"]]
    assert indexes == sorted(indexes) and ended["ledger_index"] == indexes[-1]
    with platform.session() as s:
        entries = platform.ledger.entries(s, object_id=cid)
    assert [e.index for e in entries] == indexes
    records = [decode_leaf(e.leaf) for e in entries]
    assert [r["type"] for r in records] == [
        "contract.proposed",
        "contract.active",
        "contract.terminated",
    ]
    assert all(r["purpose"] == "readmission risk research" for r in records)


def test_proposals_are_checked(capi: TestClient, parties: dict[str, Any]) -> None:
    p = parties
    base = {"provider_org": p["prov_org"], "datasets": [p["ds"]["id"]], "purpose": "research"}
    # A provider does not propose (the policy's role table says who may).
    assert_problem(capi.post("/v1/contracts", headers=p["prov"], json=base), 403)
    # Datasets must be the named provider's.
    r = capi.post("/v1/contracts", headers=p["ent"], json={**base, "provider_org": p["ent_org"]})
    assert_problem(r, 422, "invalid-input")
    r = capi.post("/v1/contracts", headers=p["ent"], json={**base, "datasets": ["nope"]})
    assert_problem(r, 422, "invalid-input")
    now = datetime.now(UTC)
    r = capi.post(
        "/v1/contracts",
        headers=p["ent"],
        json={
            **base,
            "not_before": now.isoformat(),
            "not_after": (now - timedelta(days=1)).isoformat(),
        },
    )
    assert_problem(r, 422, "invalid-input")
    assert_problem(capi.post("/v1/contracts", headers=p["ent"], json={"purpose": 1}), 422)
