"""Organisations (operator) and clients (each org's own admin); roles follow the org kind."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

import audit
from gateway.platform import Platform
from tests.conftest import login
from tests.helpers.i11_people import onboard_first_admin


def test_operator_creates_org_and_client_that_can_log_in(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    admin = login(api, creds, "operator-admin")
    r = api.post(
        "/v1/organisations", json={"name": "District Hospital 3", "kind": "provider"}, headers=admin
    )
    assert r.status_code == 201, r.text
    org = r.json()
    # The operator invites the first administrator; that person issues the clients.
    person = onboard_first_admin(api, admin, org["id"], "hospital3-admin")
    r = api.post(
        f"/v1/organisations/{org['id']}/clients",
        json={"name": "hospital-3", "roles": ["data-provider"]},
        headers=person,
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    token = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": issued["client_id"],
            "client_secret": issued["client_secret"],
        },
    )
    assert token.status_code == 200
    with platform.session() as s:
        events = set(s.scalars(select(audit.AuditRecord.event_type)))
    assert {"organisation.created", "client.created"} <= events


def test_roles_must_fit_the_org_kind_and_duties_stay_separate(
    api: TestClient, creds: dict[str, Any]
) -> None:
    admin = login(api, creds, "operator-admin")
    auditor = login(api, creds, "auditor")
    security = login(api, creds, "security-admin")
    org_id = creds["auditor"]["org_id"]
    # The auditor changes nothing (三员分立), not even its own organisation's clients.
    for roles in (["auditor", "security-admin"], ["data-provider"], ["auditor"]):
        r = api.post(
            f"/v1/organisations/{org_id}/clients",
            json={"name": "x-auditor", "roles": roles},
            headers=auditor,
        )
        assert r.status_code == 403, r.text
        assert "separation of duties" in r.json()["detail"]
    # The security organisation issues its own; one client never holds two duties.
    sec_org = creds["security-admin"]["org_id"]
    r = api.post(
        f"/v1/organisations/{sec_org}/clients",
        json={"name": "x-sec", "roles": ["security-admin", "system-admin"]},
        headers=security,
    )
    assert r.status_code in (403, 422), r.text
    r = api.post(
        f"/v1/organisations/{sec_org}/clients",
        json={"name": "x-sec", "roles": ["data-provider"]},
        headers=security,
    )
    assert r.status_code in (403, 422), r.text
    r = api.post(
        f"/v1/organisations/{sec_org}/clients",
        json={"name": "x-sec", "roles": ["security-admin"]},
        headers=security,
    )
    assert r.status_code == 201, r.text
    r = api.post("/v1/organisations", json={"name": "Nobody", "kind": "alien"}, headers=admin)
    assert r.status_code == 422
    # An unknown organisation is refused without saying whether it exists.
    r = api.post(
        "/v1/organisations/does-not-exist/clients",
        json={"name": "c1", "roles": ["auditor"]},
        headers=admin,
    )
    assert r.status_code == 403


def test_system_admin_cannot_mint_security_or_audit_credentials(
    api: TestClient, creds: dict[str, Any]
) -> None:
    admin = login(api, creds, "operator-admin")
    for name, role in (("auditor", "auditor"), ("security-admin", "security-admin")):
        org_id = creds[name]["org_id"]
        r = api.post(
            f"/v1/organisations/{org_id}/clients",
            json={"name": f"rogue-{name}", "roles": [role]},
            headers=admin,
        )
        assert r.status_code == 403, name
    # Nor may the security administrator issue audit credentials, or vice versa.
    r = api.post(
        f"/v1/organisations/{creds['auditor']['org_id']}/clients",
        json={"name": "rogue", "roles": ["auditor"]},
        headers=login(api, creds, "security-admin"),
    )
    assert r.status_code == 403


def test_only_system_admin_manages_accounts(api: TestClient, creds: dict[str, Any]) -> None:
    for name in ("auditor", "security-admin", "provider-transport", "enterprise-fintech"):
        headers = login(api, creds, name)
        r = api.post(
            "/v1/organisations", json={"name": f"Org {name}", "kind": "provider"}, headers=headers
        )
        assert r.status_code == 403, name
        assert r.headers["content-type"].startswith("application/problem+json")


def test_duplicate_org_name_conflicts(api: TestClient, creds: dict[str, Any]) -> None:
    admin = login(api, creds, "operator-admin")
    r = api.post(
        "/v1/organisations", json={"name": "City Audit Office", "kind": "auditor"}, headers=admin
    )
    assert r.status_code == 409


def test_seeded_credentials_file_is_private(platform: Platform, creds: dict[str, Any]) -> None:
    path = platform.settings.credentials_file
    assert path.stat().st_mode & 0o777 == 0o600
    names = {
        "provider-transport",
        "provider-health",
        "enterprise-fintech",
        "auditor",
        "security-admin",
    }
    assert names <= set(creds)
    for c in creds.values():
        assert {"client_id", "client_secret", "org", "kind", "roles"} <= set(c)


def test_health_and_docs_are_public(api: TestClient) -> None:
    assert api.get("/healthz").json()["status"] == "ok"
    assert api.get("/docs").status_code == 200
    assert "/v1/datasets" in api.get("/openapi.json").json()["paths"]


def test_account_changes_roll_back_with_their_audit_record(
    api: TestClient, creds: dict[str, Any], platform: Platform, monkeypatch: Any
) -> None:
    import exchange

    admin = login(api, creds, "operator-admin")
    provider_admin = login(api, creds, "provider-health")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr("exchange.accounts.audit.record", broken)
    client = TestClient(api.app, raise_server_exceptions=False)
    r = client.post(
        "/v1/organisations", json={"name": "Ghost Org", "kind": "provider"}, headers=admin
    )
    assert r.status_code == 500
    org_id = creds["provider-health"]["org_id"]
    r = client.post(
        f"/v1/organisations/{org_id}/clients",
        json={"name": "ghost", "roles": ["data-provider"]},
        headers=provider_admin,
    )
    assert r.status_code == 500
    with platform.session() as s:
        names = set(s.scalars(select(exchange.Organisation.name)))
        clients = set(s.scalars(select(exchange.Client.name)))
    assert "Ghost Org" not in names and "ghost" not in clients
