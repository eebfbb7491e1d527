"""/v1/policies: read the active bundle, activate a changed matrix, refuse bad bundles."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from gateway.platform import Platform
from tests.conftest import login
from tests.helpers.api import PROBLEM


def test_security_admin_changes_the_matrix_and_it_lands_on_the_ledger(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    sec = login(api, creds, "security-admin")
    active = api.get("/v1/policies", headers=sec).json()
    assert active["revision"] == 1 and "authz.rego" in active["modules"]
    matrix = copy.deepcopy(active["matrix"])
    matrix["obligation_defaults"] = {**matrix.get("obligation_defaults", {})}
    cell = matrix["cells"]["general-4/conditional"]["actions"]["computation.request"]
    cell.setdefault("obligations", {})["min_cohort"] = 25
    r = api.put("/v1/policies/matrix", json=matrix, headers=sec)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] is True and body["revision"] == 2
    assert any("general-4/conditional" in c for c in body["changes"]), body["changes"]
    with platform.session() as session:
        entry = platform.ledger.entry(session, body["ledger_index"])
    assert b'"type":"policy.activated"' in entry.leaf
    assert body["digest"].encode() in entry.leaf
    assert api.get("/v1/policies", headers=sec).json()["revision"] == 2
    history = api.get("/v1/policies/history", headers=sec).json()
    assert [h["revision"] for h in history["items"]][-2:] == [1, 2]
    same = api.put("/v1/policies/matrix", json=matrix, headers=sec).json()
    assert same["changed"] is False


def test_auditor_reads_but_cannot_change_policies(
    api: TestClient, creds: dict[str, dict[str, Any]]
) -> None:
    auditor = login(api, creds, "auditor")
    active = api.get("/v1/policies", headers=auditor)
    assert active.status_code == 200
    r = api.put("/v1/policies/matrix", json=active.json()["matrix"], headers=auditor)
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert "separation of duties" in r.json()["detail"]
    provider = login(api, creds, "provider-transport")
    assert api.get("/v1/policies", headers=provider).status_code == 403


def test_invalid_or_failing_bundles_are_refused_and_nothing_changes(
    api: TestClient, creds: dict[str, dict[str, Any]]
) -> None:
    sec = login(api, creds, "security-admin")
    broken = api.put(
        "/v1/policies/modules/authz.rego",
        json={"source": "package pdx.authz\n\nthis is not"},
        headers=sec,
    )
    assert broken.status_code == 422, broken.text
    assert broken.json()["type"].endswith("/policy-invalid")
    active = api.get("/v1/policies", headers=sec).json()
    matrix = copy.deepcopy(active["matrix"])
    matrix["cells"]["core/open"]["actions"]["dataset.download"] = {"allow": True}
    bad = api.put("/v1/policies/matrix", json=matrix, headers=sec)
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    sod = active["sources"]["sod.rego"].replace('"kms.read",\n]', '"kms.read",\n\t"kms.admin",\n]')
    assert sod != active["sources"]["sod.rego"]
    failing = api.put("/v1/policies/modules/sod.rego", json={"source": sod}, headers=sec)
    assert failing.status_code == 422, failing.text
    assert failing.json()["type"].endswith("/policy-tests-failed")
    assert failing.json()["failures"]
    assert api.get("/v1/policies", headers=sec).json()["revision"] == active["revision"]


def test_token_signing_key_rotation_keeps_old_tokens_valid(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    old = login(api, creds, "provider-transport")
    sec = login(api, creds, "security-admin")
    keys = api.get("/v1/kms/keys", headers=sec).json()
    token_key = next(k for k in keys["items"] if k["purpose"] == "token-signing")
    r = api.post(f"/v1/kms/keys/{token_key['key_id']}/rotate", headers=sec)
    assert r.status_code == 200, r.text
    new = login(api, creds, "provider-transport")
    assert api.get("/v1/me", headers=old).status_code == 200  # old kid still published
    assert api.get("/v1/me", headers=new).status_code == 200
    kids = {k["kid"] for k in api.get("/.well-known/jwks.json").json()["keys"]}
    assert len(kids) >= 2
