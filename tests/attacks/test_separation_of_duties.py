"""Issue 11 attacks: one person posing as two, and the operator posing as a provider."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

import crypto
import exchange
from crypto.kms import KeyManager
from gateway.platform import Platform, build_platform
from gateway.settings import Settings
from tests.conftest import EXAMPLE_CSV, login
from tests.test_api_datasets import metadata, register

PROBLEM = "application/problem+json"
PERSON_GRANT = "urn:pdx:params:oauth:grant-type:person"


class Clock:
    """The platform's clock, moved by the test (TOTP steps and invitation expiry)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform(settings: Settings, clock: Clock) -> Iterator[Platform]:
    p = build_platform(settings, clock=clock)
    yield p
    p.engine.dispose()


def code_at(secret: str, clock: Clock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now + timedelta(seconds=30 * steps))


def forbidden(r: Any) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == PROBLEM


def person_login(api: TestClient, login_name: str, password: str, totp: str) -> Any:
    return api.post(
        "/v1/auth/token",
        data={
            "grant_type": PERSON_GRANT,
            "username": login_name,
            "password": password,
            "totp": totp,
        },
    )


def enrol(api: TestClient, clock: Clock, code: str, login_name: str) -> dict[str, str]:
    """Redeem an invitation, confirm the first TOTP code; returns the person's secrets."""
    password = "correct horse battery staple"
    r = api.post(
        "/v1/invitations/redeem", json={"code": code, "login": login_name, "password": password}
    )
    assert r.status_code == 201, r.text
    secret = r.json()["totp_secret"]
    ok = api.post(
        "/v1/invitations/confirm",
        json={"login": login_name, "password": password, "totp": code_at(secret, clock)},
    )
    assert ok.status_code == 200 and ok.json()["state"] == "active", ok.text
    clock.now += timedelta(seconds=30)  # the next login uses a fresh step
    return {
        "login": login_name,
        "password": password,
        "totp_secret": secret,
        "person_id": r.json()["person_id"],
    }


def person_headers(api: TestClient, clock: Clock, person: dict[str, str]) -> dict[str, str]:
    r = person_login(
        api, person["login"], person["password"], code_at(person["totp_secret"], clock)
    )
    assert r.status_code == 200, r.text
    clock.now += timedelta(seconds=30)
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def plaintext(platform: Platform, dataset_id: str) -> bytes:
    with platform.session() as session:
        return b"".join(exchange.iter_plaintext(platform.catalog, session, dataset_id))


def destroy_provider_kek(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> tuple[str, str]:
    provider = login(api, creds, "provider-transport")
    ds = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata()).json()
    kek = KeyManager.kek_id(creds["provider-transport"]["org_id"])
    req = api.post(
        f"/v1/kms/keys/{kek}/destroy",
        json={"reason": "provider left"},
        headers=login(api, creds, "security-admin"),
    )
    assert req.status_code == 202, req.text
    return ds["id"], req.json()["id"]


# -- finding: two-person rule bypassed by one person with two clients --------------------


def test_one_person_with_a_second_client_cannot_approve_a_destruction(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    dataset_id, request_id = destroy_provider_kek(api, creds, platform)
    sec = login(api, creds, "security-admin")
    r = api.post(
        f"/v1/organisations/{creds['security-admin']['org_id']}/clients",
        json={"name": "my-second-hat", "roles": ["security-admin"]},
        headers=sec,
    )
    assert r.status_code == 201, r.text  # issuing oneself a client is allowed ...
    c = r.json()
    token = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    ).json()["access_token"]
    approve = api.post(
        f"/v1/kms/destroy-requests/{request_id}/approve",
        headers={"Authorization": f"Bearer {token}"},
    )
    forbidden(approve)  # ... but it is the same person: no second approver
    assert "same person" in approve.json()["detail"]
    assert plaintext(platform, dataset_id)  # not shredded


def test_self_created_accomplice_cannot_approve(
    api: TestClient, creds: dict[str, Any], platform: Platform, clock: Clock
) -> None:
    dataset_id, request_id = destroy_provider_kek(api, creds, platform)
    sec_org = creds["security-admin"]["org_id"]
    inv = api.post(
        f"/v1/organisations/{sec_org}/invitations",
        json={"display_name": "Accomplice", "roles": ["security-admin"]},
        headers=login(api, creds, "security-admin"),
    )
    assert inv.status_code == 201, inv.text
    accomplice = enrol(api, clock, inv.json()["code"], "accomplice")
    approve = api.post(
        f"/v1/kms/destroy-requests/{request_id}/approve",
        headers=person_headers(api, clock, accomplice),
    )
    forbidden(approve)
    assert "created by the requester" in approve.json()["detail"]
    assert plaintext(platform, dataset_id)


def test_an_independent_person_approves_and_both_people_are_recorded(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    dataset_id, request_id = destroy_provider_kek(api, creds, platform)
    ok = api.post(
        f"/v1/kms/destroy-requests/{request_id}/approve",
        headers=login(api, creds, "security-admin-2"),
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["requested_by_person"] == creds["security-admin"]["person"]["person_id"]
    assert body["decided_by_person"] == creds["security-admin-2"]["person"]["person_id"]
    with pytest.raises(crypto.CryptoError):
        plaintext(platform, dataset_id)


# -- finding: the system administrator acting as a provider ---------------------------------


def test_system_admin_cannot_issue_provider_clients_or_people(
    api: TestClient, creds: dict[str, Any]
) -> None:
    admin = login(api, creds, "operator-admin")
    for target in ("provider-transport", "enterprise-fintech"):
        org_id = creds[target]["org_id"]
        role = creds[target]["roles"][0]
        forbidden(
            api.post(
                f"/v1/organisations/{org_id}/clients",
                json={"name": "operator-as-provider", "roles": [role]},
                headers=admin,
            )
        )
        forbidden(
            api.post(
                f"/v1/organisations/{org_id}/invitations",
                json={"display_name": "Operator Puppet", "roles": [role], "org_admin": True},
                headers=admin,
            )
        )
        # Nor a second "first administrator" once the organisation has people.
        forbidden(
            api.post(
                f"/v1/organisations/{org_id}/first-admin-invitation",
                json={"display_name": "Operator Puppet"},
                headers=admin,
            )
        )


def test_operator_onboards_a_provider_whose_admin_issues_its_clients(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    admin = login(api, creds, "operator-admin")
    org = api.post(
        "/v1/organisations", json={"name": "District Hospital 9", "kind": "provider"}, headers=admin
    ).json()
    inv = api.post(
        f"/v1/organisations/{org['id']}/first-admin-invitation",
        json={"display_name": "Hospital Admin"},
        headers=admin,
    )
    assert inv.status_code == 201, inv.text
    person = enrol(api, clock, inv.json()["code"], "hospital9-admin")
    headers = person_headers(api, clock, person)
    r = api.post(
        f"/v1/organisations/{org['id']}/clients",
        json={"name": "hospital-9", "roles": ["data-provider"]},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    me = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": r.json()["client_id"],
            "client_secret": r.json()["client_secret"],
        },
    )
    assert me.status_code == 200
    forbidden(
        api.post(  # the operator invited once; from now on the provider does
            f"/v1/organisations/{org['id']}/first-admin-invitation",
            json={"display_name": "Second Puppet"},
            headers=admin,
        )
    )


# -- invitations and TOTP ---------------------------------------------------------------------


def _first_admin_code(api: TestClient, creds: dict[str, Any], name: str) -> str:
    admin = login(api, creds, "operator-admin")
    org = api.post("/v1/organisations", json={"name": name, "kind": "enterprise"}, headers=admin)
    inv = api.post(
        f"/v1/organisations/{org.json()['id']}/first-admin-invitation",
        json={"display_name": "First Admin"},
        headers=admin,
    )
    assert inv.status_code == 201, inv.text
    code: str = inv.json()["code"]
    return code


def test_invitation_replay_is_refused(api: TestClient, creds: dict[str, Any]) -> None:
    code = _first_admin_code(api, creds, "Replay Corp")
    body = {"code": code, "login": "replay-admin", "password": "a long enough password"}
    assert api.post("/v1/invitations/redeem", json=body).status_code == 201
    again = api.post("/v1/invitations/redeem", json={**body, "login": "replay-admin-2"})
    forbidden(again)
    assert again.json()["type"].endswith("/invitation-invalid")


def test_expired_invitation_is_refused(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    code = _first_admin_code(api, creds, "Late Corp")
    clock.now += timedelta(days=3, seconds=1)
    r = api.post(
        "/v1/invitations/redeem",
        json={"code": code, "login": "late-admin", "password": "a long enough password"},
    )
    forbidden(r)
    assert r.json()["type"].endswith("/invitation-invalid")


def test_totp_replay_and_wrong_codes_are_refused(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    person = enrol(api, clock, _first_admin_code(api, creds, "Totp Corp"), "totp-admin")
    code = code_at(person["totp_secret"], clock)
    first = person_login(api, person["login"], person["password"], code)
    assert first.status_code == 200, first.text
    replay = person_login(api, person["login"], person["password"], code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    wrong = f"{(int(code_at(person['totp_secret'], clock, 1)) + 1) % 1_000_000:06d}"
    bad = person_login(api, person["login"], person["password"], wrong)
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM
    no_password = person_login(
        api, person["login"], "wrong password!!", code_at(person["totp_secret"], clock, 1)
    )
    assert no_password.status_code == 400


def test_an_admin_of_one_org_cannot_invite_into_another(
    api: TestClient, creds: dict[str, Any]
) -> None:
    provider = login(api, creds, "provider-transport")  # owned by the transport admin
    for target in ("provider-health", "enterprise-fintech"):
        role = creds[target]["roles"][0]
        forbidden(
            api.post(
                f"/v1/organisations/{creds[target]['org_id']}/invitations",
                json={"display_name": "Infiltrator", "roles": [role], "org_admin": True},
                headers=provider,
            )
        )
        forbidden(
            api.post(
                f"/v1/organisations/{creds[target]['org_id']}/clients",
                json={"name": "infiltrator", "roles": [role]},
                headers=provider,
            )
        )
