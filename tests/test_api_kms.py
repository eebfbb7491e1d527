"""/v1/kms over HTTP: inventory, roles, rotation without downtime, two-person shredding."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import crypto
import exchange
from crypto.kms import KeyManager
from gateway.platform import Platform
from tests.conftest import EXAMPLE_CSV, login
from tests.helpers.api import PROBLEM
from tests.test_api_datasets import metadata, register


def plaintext(platform: Platform, dataset_id: str) -> bytes:
    with platform.session() as session:
        return b"".join(exchange.iter_plaintext(platform.catalog, session, dataset_id))


def ledger_types(platform: Platform) -> list[str]:
    with platform.session() as session:
        return [
            exchange.trail.decode_type(e.leaf)
            for start in range(0, platform.ledger.size(session), 1000)
            for e in platform.ledger.entries(session, start=start)
        ]


def second_key_admin(api: TestClient, creds: dict[str, Any]) -> dict[str, str]:
    """A second, independent key administrator (another person; issue 11)."""
    return login(api, creds, "security-admin-2")


def test_inventory_is_for_key_roles_only(api: TestClient, creds: dict[str, Any]) -> None:
    keys = api.get("/v1/kms/keys", headers=login(api, creds, "security-admin"))
    assert keys.status_code == 200, keys.text
    purposes = {k["purpose"] for k in keys.json()["items"]}
    assert {"token-signing", "ledger-signing"} <= purposes
    sample = keys.json()["items"][0]
    for field in ("key_id", "version", "purpose", "algorithm", "state", "owner_org"):
        assert field in sample, sample
    assert api.get("/v1/kms/keys", headers=login(api, creds, "auditor")).status_code == 200
    r = api.get("/v1/kms/keys", headers=login(api, creds, "provider-transport"))
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("/forbidden")  # the policy refuses before the KMS
    auditor_rotates = api.post("/v1/kms/keys/whatever/rotate", headers=login(api, creds, "auditor"))
    assert auditor_rotates.status_code == 403


def test_state_change_route_moves_one_version(api: TestClient, creds: dict[str, Any]) -> None:
    """/keys/{id}/{action}: each action reaches its own transition, and a refused one is 409."""
    admin = login(api, creds, "security-admin")
    kek = KeyManager.kek_id(creds["provider-transport"]["org_id"])

    def act(action: str, **body: Any) -> Any:
        return api.post(f"/v1/kms/keys/{kek}/{action}", json={"version": 1, **body}, headers=admin)

    suspended = act("suspend", reason="investigation")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["state"] == "suspended"
    refused = act("activate")  # activation is only from pre-active
    assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"].endswith("/key-state-transition-invalid")
    assert act("resume").json()["state"] == "active"
    assert act("archive").json()["state"] == "deactivated"
    assert act("revoke", reason="leaked").json()["state"] == "compromised"
    auditor = api.post(
        f"/v1/kms/keys/{kek}/suspend", json={"version": 1}, headers=login(api, creds, "auditor")
    )
    assert auditor.status_code == 403


def test_rotation_rewraps_without_losing_data_and_lands_on_the_ledger(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    provider = login(api, creds, "provider-transport")
    ds = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata()).json()
    before = plaintext(platform, ds["id"])
    kek = KeyManager.kek_id(creds["provider-transport"]["org_id"])
    admin = login(api, creds, "security-admin")
    r = api.post(f"/v1/kms/keys/{kek}/rotate", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True and r.json()["version"] == 2
    assert plaintext(platform, ds["id"]) == before
    versions = api.get(f"/v1/kms/keys/{kek}", headers=admin).json()["items"]
    assert sorted(v["version"] for v in versions) == [1, 2]
    assert "key.rotated" in ledger_types(platform)
    missing = api.post("/v1/kms/keys/no-such-key/rotate", headers=admin)
    assert missing.status_code == 404 and missing.json()["type"].endswith("/key-not-found")


def test_destroying_a_kek_needs_two_administrators_and_shreds_the_data(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    provider = login(api, creds, "provider-transport")
    ds = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata()).json()
    kek = KeyManager.kek_id(creds["provider-transport"]["org_id"])
    admin = login(api, creds, "security-admin")
    req = api.post(f"/v1/kms/keys/{kek}/destroy", json={"reason": "provider left"}, headers=admin)
    assert req.status_code == 202, req.text
    request_id = req.json()["id"]
    same = api.post(f"/v1/kms/destroy-requests/{request_id}/approve", headers=admin)
    # The policy refuses first (sod.rego, issue 11); the KMS would answer 409 itself.
    assert same.status_code == 403, same.text
    assert "same person" in same.json()["detail"]
    assert plaintext(platform, ds["id"])  # still readable until approved
    other = second_key_admin(api, creds)
    ok = api.post(f"/v1/kms/destroy-requests/{request_id}/approve", headers=other)
    assert ok.status_code == 200, ok.text
    with pytest.raises(crypto.CryptoError):
        plaintext(platform, ds["id"])
    types = ledger_types(platform)
    assert "key.destroy_requested" in types and "key.destroyed" in types
