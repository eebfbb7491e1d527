"""Issue 11: the two-person rule over the whole invitation lineage, through the real server.

A security administrator who invites a puppet, who invites another, must not find a
second approver among them: the approver may not descend from the requester (through
any number of invitations), nor the requester from the approver.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import crypto
from crypto.kms import KeyManager
from gateway.platform import Platform
from tests.attacks import test_separation_of_duties as sod
from tests.attacks.test_separation_of_duties import (
    Clock,
    destroy_provider_kek,
    enrol,
    forbidden,
    person_headers,
    plaintext,
)
from tests.conftest import EXAMPLE_CSV, login
from tests.test_api_datasets import metadata, register

# That module's platform runs on a clock the test moves (TOTP steps without sleeping).
clock = sod.clock
platform = sod.platform


def invite(
    api: TestClient, clock: Clock, org_id: str, by: dict[str, str], name: str
) -> dict[str, str]:
    """`by` invites a security administrator who may invite further people; enrolled."""
    inv = api.post(
        f"/v1/organisations/{org_id}/invitations",
        json={"display_name": name.title(), "roles": ["security-admin"], "org_admin": True},
        headers=by,
    )
    assert inv.status_code == 201, inv.text
    return enrol(api, clock, inv.json()["code"], name)


def chain(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """A (the seeded security admin) invites B, B invites C: headers of A, B and C."""
    org = creds["security-admin"]["org_id"]
    a = login(api, creds, "security-admin")
    b = person_headers(api, clock, invite(api, clock, org, a, "puppet-b"))
    c = person_headers(api, clock, invite(api, clock, org, b, "puppet-c"))
    return a, b, c


def provider_data(api: TestClient, creds: dict[str, Any]) -> str:
    """A dataset under the transport provider's KEK (the one the tests try to shred)."""
    provider = login(api, creds, "provider-transport")
    dataset_id: str = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata()).json()["id"]
    return dataset_id


def request_destroy(api: TestClient, creds: dict[str, Any], by: dict[str, str]) -> str:
    """`by` asks to destroy the transport provider's KEK; the request's id."""
    kek = KeyManager.kek_id(creds["provider-transport"]["org_id"])
    r = api.post(f"/v1/kms/keys/{kek}/destroy", json={"reason": "provider left"}, headers=by)
    assert r.status_code == 202, r.text
    request_id: str = r.json()["id"]
    return request_id


def approve(api: TestClient, request_id: str, by: dict[str, str]) -> Any:
    return api.post(f"/v1/kms/destroy-requests/{request_id}/approve", headers=by)


def cancel(api: TestClient, request_id: str, by: dict[str, str]) -> None:
    r = api.post(f"/v1/kms/destroy-requests/{request_id}/cancel", headers=by)
    assert r.status_code == 200, r.text


def test_a_grandchild_of_the_requester_cannot_approve(
    api: TestClient, creds: dict[str, Any], platform: Platform, clock: Clock
) -> None:
    _a, _b, c = chain(api, creds, clock)
    dataset_id, request_id = destroy_provider_kek(api, creds, platform)  # asked by A
    refused = approve(api, request_id, c)
    forbidden(refused)
    assert "created by the requester" in refused.json()["detail"]
    assert plaintext(platform, dataset_id)  # not shredded


def test_the_requesters_ancestors_cannot_approve(
    api: TestClient, creds: dict[str, Any], platform: Platform, clock: Clock
) -> None:
    a, b, c = chain(api, creds, clock)
    # C asks; A (C's inviter's inviter) and B (C's inviter) are both in C's lineage.
    dataset_id = provider_data(api, creds)
    request_id = request_destroy(api, creds, c)
    for approver in (a, b):
        refused = approve(api, request_id, approver)
        forbidden(refused)
        assert "was created by the approver" in refused.json()["detail"]
    assert plaintext(platform, dataset_id)
    cancel(api, request_id, c)
    # B asks; A created B directly (the case the direct rule already covered).
    request_id = request_destroy(api, creds, b)
    forbidden(approve(api, request_id, a))
    cancel(api, request_id, b)


def test_a_person_outside_both_lineages_approves(
    api: TestClient, creds: dict[str, Any], platform: Platform, clock: Clock
) -> None:
    # The second seeded administrator's own invitee is unrelated to A and to A's puppets.
    org = creds["security-admin"]["org_id"]
    other = invite(api, clock, org, login(api, creds, "security-admin-2"), "other-d")
    _a, _b, c = chain(api, creds, clock)
    dataset_id = provider_data(api, creds)
    request_id = request_destroy(api, creds, c)
    ok = approve(api, request_id, person_headers(api, clock, other))
    assert ok.status_code == 200, ok.text
    assert ok.json()["decided_by_person"] == other["person_id"]
    with pytest.raises(crypto.CryptoError):
        plaintext(platform, dataset_id)


# -- a credential made by the requester for someone else -----------------------------------


def client_headers(api: TestClient, client_id: str, secret: str) -> dict[str, str]:
    r = api.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_a_client_the_requester_issued_for_another_person_cannot_approve(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    # A issues itself a client owned by the independent second administrator ...
    org = creds["security-admin"]["org_id"]
    other = creds["security-admin-2"]["person"]["person_id"]
    r = api.post(
        f"/v1/organisations/{org}/clients",
        json={"name": "in-the-name-of-s2", "roles": ["security-admin"], "owner_person_id": other},
        headers=login(api, creds, "security-admin"),
    )
    assert r.status_code == 201, r.text
    dataset_id, request_id = destroy_provider_kek(api, creds, platform)  # asked by A
    refused = approve(
        api, request_id, client_headers(api, r.json()["client_id"], r.json()["client_secret"])
    )
    forbidden(refused)  # ... and it knows the secret: it would approve as S2
    assert "created by the requester" in refused.json()["detail"]
    assert plaintext(platform, dataset_id)


def test_a_secret_the_requester_rotated_for_another_person_cannot_approve(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    # A rotates the second administrator's own client, and so learns its new secret.
    org = creds["security-admin"]["org_id"]
    theirs = creds["security-admin-2"]["client_id"]
    r = api.post(
        f"/v1/organisations/{org}/clients/{theirs}/rotate-secret",
        headers=login(api, creds, "security-admin"),
    )
    assert r.status_code == 200, r.text
    dataset_id, request_id = destroy_provider_kek(api, creds, platform)  # asked by A
    refused = approve(api, request_id, client_headers(api, theirs, r.json()["client_secret"]))
    forbidden(refused)
    assert "created by the requester" in refused.json()["detail"]
    assert plaintext(platform, dataset_id)


def test_the_requester_cannot_approve_what_it_asked_through_a_client_it_made(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    # A asks in the second administrator's name (a client A issued for them), then
    # approves as itself.
    org = creds["security-admin"]["org_id"]
    a = login(api, creds, "security-admin")
    other = creds["security-admin-2"]["person"]["person_id"]
    r = api.post(
        f"/v1/organisations/{org}/clients",
        json={"name": "asks-as-s2", "roles": ["security-admin"], "owner_person_id": other},
        headers=a,
    )
    assert r.status_code == 201, r.text
    dataset_id = provider_data(api, creds)
    as_other = client_headers(api, r.json()["client_id"], r.json()["client_secret"])
    request_id = request_destroy(api, creds, as_other)
    refused = approve(api, request_id, a)
    forbidden(refused)
    assert "was created by the approver" in refused.json()["detail"]
    assert plaintext(platform, dataset_id)
